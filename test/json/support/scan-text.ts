/** The canonical scanner on a whole text: its canonical form, or undefined when it gives up. */
import { arenaBytes, resetArena, scanCanonical, scanned } from "../../../src/json/canonical-scan.js";

export function scan(text: string): string | undefined {
  const bytes = Buffer.from(text, "utf8");
  resetArena();
  if (scanCanonical(bytes, 0, bytes.length) !== bytes.length) return undefined;
  const from = scanned.rebuilt ? arenaBytes() : bytes;
  return Buffer.from(from.subarray(scanned.start, scanned.end)).toString("latin1");
}
