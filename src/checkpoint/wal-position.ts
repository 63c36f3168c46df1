/**
 * Finding a checkpoint's WAL position and streaming the suffix after it, at a cost that depends on
 * the distance to the tail, not on the history: the position is found by reading the run's WAL
 * backwards from its end, and the suffix is read forwards from the byte offset found.
 *
 * Entries are parsed and hash-checked with the WAL module's own `checkLine` (src/wal/entry.ts);
 * the suffix is read by the scanner of `wal verify` with checkLine's verdicts (SuffixSink).
 */
import { open } from "node:fs/promises";
import { checkLine, GENESIS_HASH, type WalEntry } from "../wal/entry.js";
import { pullLines } from "../wal/pull-lines.js";
import { readLinesBackward } from "../workspace/lines.js";
import { SuffixSink, WalSuffixError } from "./suffix-sink.js";

const SEQ_PREFIX = /^\{"seq":(\d+),/;

export interface LocatedEntry {
  entry: WalEntry;
  /** Byte offset just after the entry's line: where the suffix starts. */
  end: number;
}

export type LocateResult =
  | { ok: true; located: LocatedEntry }
  | { ok: false; problem: string; code: "missing_wal" | "missing_entry" | "hash_mismatch" | "unreadable" };

/**
 * The entry with `seq` in `file`, checked: its content hashes to its entry_hash, and that hash is
 * `expectedHash`. Reads backwards from the end and stops at the entry.
 */
export async function locateWalEntry(file: string, seq: number, expectedHash: string): Promise<LocateResult> {
  try {
    for await (const line of readLinesBackward(file)) {
      const m = SEQ_PREFIX.exec(line.text);
      let lineSeq: number | undefined = m ? Number(m[1]) : undefined;
      if (lineSeq === undefined || lineSeq === seq) {
        const check = checkLine(line.text);
        if (!check.ok) {
          if (lineSeq === seq) {
            return {
              ok: false,
              code: "hash_mismatch",
              problem: `WAL entry seq ${seq} is damaged: ${check.message}`,
            };
          }
          continue; // a torn tail or damaged line that is not ours: keep going back
        }
        lineSeq = check.entry.seq;
        if (lineSeq === seq) {
          if (check.entry.entry_hash !== expectedHash) {
            return {
              ok: false,
              code: "hash_mismatch",
              problem: `WAL entry seq ${seq} has hash ${check.entry.entry_hash.slice(0, 12)}…, checkpoint expects ${expectedHash.slice(0, 12)}…`,
            };
          }
          return { ok: true, located: { entry: check.entry, end: line.end } };
        }
      }
      if (lineSeq < seq) {
        // Only an entry ends the search: the prefix of a torn tail (a crash mid-append) is not one.
        if (m && lineSeq !== seq && !checkLine(line.text).ok) continue;
        break;
      }
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      return { ok: false, code: "missing_wal", problem: `WAL file ${file} does not exist` };
    return { ok: false, code: "unreadable", problem: `WAL file ${file}: ${(err as Error).message}` };
  }
  return { ok: false, code: "missing_entry", problem: `WAL ${file} has no entry with seq ${seq}` };
}

export { WalSuffixError };

export interface SuffixOptions {
  /** Byte offset of the first line to read (0: the whole file). */
  offset: number;
  /** Line number of that first line, for messages (1 when unknown offsets count from 1). */
  firstLineNo?: number;
  /** The entry the suffix must link to (its hash) and the seq expected next. */
  prevHash: string;
  nextSeq: number;
}

/**
 * Streams verified entries from `offset`: each must hash correctly, link to the previous one and
 * carry the next seq. With `onTornTail` (a run a crash left open), bad lines after the newest
 * valid one are a torn tail, which the writer's reopen cuts: they end the stream and are reported
 * there; any other break throws, and without `onTornTail` (a closed run) any bad line does.
 * Reads like `wal verify`, entry by entry: memory stays at one chunk and one entry.
 */
export function readWalSuffix(
  file: string,
  opts: SuffixOptions,
  onTornTail?: (message: string) => void,
): AsyncIterableIterator<WalEntry> {
  const sink = new SuffixSink(file, opts.prevHash, opts.nextSeq, onTornTail);
  // Line numbers in messages: one entry per line and seq from 0, so the first line is nextSeq + 1.
  const base = (opts.firstLineNo ?? opts.nextSeq + 1) - 1;
  return pullLines(() => open(file, "r"), sink, opts.offset, base);
}

export { GENESIS_HASH };
