/**
 * checkLine with the verify fast path first: a line provably in the canonical form has its hash
 * checked on its bytes (readCanonicalLine) and is parsed once, natively when its numbers allow;
 * any other line goes through checkLine, which decides and names the problem.
 */
import { isAscii } from "node:buffer";
import { parseJson, type JsonValue } from "../json/canonical.js";
import { scannedNumbers } from "../json/canonical-scan.js";
import { readCanonicalLine } from "./canonical-line.js";
import { checkLine, entryShapeProblem, toWalEntry, type JsonObject, type LineCheck } from "./entry.js";

/** checkLine's verdict on one line (without its newline), the same for every line. */
export function checkLineFast(line: string): LineCheck {
  // Only printable ASCII can be confirmed, and a string is ASCII when its UTF-8 bytes are.
  const bytes = Buffer.from(line, "utf8");
  if (isAscii(bytes) && readCanonicalLine(bytes, 0, bytes.length) === bytes.length) {
    const raw = (scannedNumbers.jsonParseExact ? JSON.parse(line) : parseJson(line)) as JsonValue;
    if (!entryShapeProblem(raw))
      return { ok: true, raw: raw as JsonObject, entry: toWalEntry(raw as JsonObject) };
  }
  return checkLine(line);
}
