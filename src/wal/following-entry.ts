/**
 * The fast path of the readers that hand out entries: a line provably in the canonical form is
 * hash-checked on its own bytes (readCanonicalLine, the fast path of `wal verify`) and, when it
 * continues the chain, its entry is built from its tokens (entryOfConfirmedLine).
 */
import { bytesEqualText, confirmedLine, readCanonicalLine } from "./canonical-line.js";
import { entryOfConfirmedLine } from "./confirmed-entry.js";
import type { WalEntry } from "./entry.js";
import { LF } from "./line-scan.js";

/**
 * The entry of the complete line at `start` when it is canonical, hashes right, carries `seq`
 * (-1: any) and links to `prevHash` (undefined: any); the next line then starts at
 * `confirmedLine.end + 1`. Undefined when it is not all that: the caller's parser decides.
 */
export function takeFollowingEntry(
  bytes: Buffer,
  start: number,
  seq: number,
  prevHash: string | undefined,
): WalEntry | undefined {
  const end = readCanonicalLine(bytes, start, bytes.length);
  if (end < 0 || bytes[end] !== LF) return undefined;
  const c = confirmedLine;
  if (seq >= 0 && c.seq !== seq) return undefined;
  if (prevHash !== undefined && !bytesEqualText(bytes, c.prevStart, c.prevEnd, prevHash)) return undefined;
  return entryOfConfirmedLine(bytes, prevHash);
}
