/**
 * The chain of a batch of WAL lines read from their frames alone: each line as the writers print
 * it starts `{"seq":N,"prev_hash":"<64 hex>"` and ends `,"entry_hash":"<64 hex>"}`, so its seq and
 * both links are at fixed places. Reading them costs a scan for newlines and a few byte compares
 * per line: no parse, no canonical body, no sha256.
 *
 * It proves that the lines are whole, in seq order without a gap, and that each one's prev_hash
 * field is the entry_hash field of the line before. It does not prove that a line's entry_hash is
 * the hash of its content: that takes checkBatch (chain.ts), which the readers that must prove the
 * chain (restore, `dr list --check`, `wal verify`) run.
 */
import { bytesEqualText } from "./canonical-line.js";
import { LF } from "./line-scan.js";

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

const OPEN_SEQ = ascii('{"seq":');
const PREV_FIELD = ascii(',"prev_hash":"');
const HASH_FIELD = ascii(',"entry_hash":"');
const HASH_LEN = 64;
/** `","entry_hash":"<64>"}` is the line's end: this many bytes before its newline. */
const TAIL_LEN = HASH_FIELD.length + HASH_LEN + 2;
/** The digits of a seq a JSON number keeps exactly (below 2^53). */
const MAX_SEQ_DIGITS = 15;

/** Lines read by their frames, linked among themselves and onto the given predecessor. */
export interface LinkedLines {
  count: number;
  firstSeq: number;
  lastSeq: number;
  /** The last line's entry_hash field. */
  lastHash: string;
  /** Where the last line starts in the region. */
  lastStart: number;
}

function startsWith(bytes: Uint8Array, p: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (bytes[p + i] !== word[i]) return false;
  return true;
}

function bytesEqual(a: Uint8Array, aStart: number, b: Uint8Array, bStart: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}

/**
 * Reads `region` (complete lines, each ending with a newline) as WAL lines that follow the entry
 * `after` (seq and entry_hash; -1 and the genesis hash for a run's start). Undefined when a line
 * is not in the writers' frame, skips or repeats a seq, or does not link to the line before:
 * the caller then checks line by line.
 */
export function linkedLines(region: Buffer, after: { seq: number; hash: string }): LinkedLines | undefined {
  let seq = after.seq;
  // The previous line's entry_hash: its 64 bytes at prevAt in region, or `after.hash` when -1.
  let prevAt = -1;
  let lastStart = 0;
  let count = 0;
  for (let start = 0; start < region.length;) {
    const nl = region.indexOf(LF, start);
    if (nl < 0 || !startsWith(region, start, OPEN_SEQ)) return undefined;
    let p = start + OPEN_SEQ.length;
    let n = 0;
    const digitsFrom = p;
    for (; region[p] >= 0x30 && region[p] <= 0x39; p++) n = n * 10 + region[p] - 0x30;
    const digits = p - digitsFrom;
    if (digits === 0 || digits > MAX_SEQ_DIGITS || (digits > 1 && region[digitsFrom] === 0x30))
      return undefined;
    if (n !== seq + 1 || !startsWith(region, p, PREV_FIELD)) return undefined;
    p += PREV_FIELD.length;
    const linked =
      prevAt < 0
        ? bytesEqualText(region, p, p + HASH_LEN, after.hash)
        : bytesEqual(region, p, region, prevAt, HASH_LEN);
    if (!linked || region[p + HASH_LEN] !== 0x22) return undefined;
    const tail = nl - TAIL_LEN;
    if (tail <= p + HASH_LEN || !startsWith(region, tail, HASH_FIELD)) return undefined;
    if (region[nl - 2] !== 0x22 || region[nl - 1] !== 0x7d) return undefined;
    seq = n;
    prevAt = tail + HASH_FIELD.length;
    lastStart = start;
    count++;
    start = nl + 1;
  }
  if (count === 0) return undefined;
  return {
    count,
    firstSeq: after.seq + 1,
    lastSeq: seq,
    lastHash: region.toString("latin1", prevAt, prevAt + HASH_LEN),
    lastStart,
  };
}
