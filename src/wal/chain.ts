/**
 * Chain verification of WAL lines: the exact, sequential state machine that names every break
 * (ChainVerifier), and the fast check a worker runs on a batch of lines (checkBatch).
 */
import { parseJsonCheckingTokens, type JsonValue } from "../json/canonical.js";
import {
  GENESIS_HASH,
  NOT_EXACT,
  digestParsedEntry,
  entryShapeProblem,
  toWalEntry,
  type JsonObject,
  type WalEntry,
} from "./entry.js";
import { bytesEqualText, confirmedLine, readCanonicalLine } from "./canonical-line.js";
import {
  confirmedCommitted,
  confirmedDecisionType,
  confirmedTimestamp,
  entryOfConfirmedLine,
} from "./confirmed-entry.js";
import { LF, emitLines, type LineSink } from "./line-scan.js";

export type WalErrorKind =
  | "prev_hash_mismatch"
  | "hash_mismatch"
  | "seq_gap"
  | "invalid_json"
  | "invalid_utf8"
  | "unreadable"
  /** Never from verifyWal (one run alone cannot show it): a backup's record of a copied run. */
  | "repeated_run";

export interface WalError {
  run_id: string;
  /** The seq of the entry at that place in the chain (the line's own seq when it is in sync). */
  seq: number;
  /** 1-based line number. */
  line: number;
  kind: WalErrorKind;
  message: string;
}

export interface VerifyResult {
  run_id: string;
  file: string;
  ok: boolean;
  /** Lines read (valid or not). */
  entries: number;
  bytes: number;
  /** Newest valid entry (-1 and the genesis hash when there is none). */
  last_seq: number;
  last_hash: string;
  errors: WalError[];
  /** Total errors found; `errors` keeps the first MAX_REPORTED_ERRORS. */
  error_count: number;
  /** Worker threads that hashed the file (0: checked on the calling thread). */
  workers: number;
}

export const MAX_REPORTED_ERRORS = 1000;

function tornOr(final: boolean, message: string): string {
  return final ? `torn tail (no newline): ${message}` : message;
}

/** Summary of a batch of lines that are all valid and chained among themselves. */
export interface CleanBatch {
  count: number;
  firstSeq: number;
  firstPrev: string;
  lastSeq: number;
  lastHash: string;
}

/** The sequential verifier: feed it every line in order; it fills `result`. */
export class ChainVerifier implements LineSink {
  readonly result: VerifyResult;
  // The seq the next line should have, and the hash it should point to (undefined right after
  // a line we could not read, whose hash we do not know).
  private expectedSeq = 0;
  private expectedPrev: string | undefined = GENESIS_HASH;
  /** Lines seen so far (the next line's number is linesSeen + 1). */
  linesSeen = 0;

  constructor(runId: string, file: string) {
    this.result = {
      run_id: runId,
      file,
      ok: true,
      entries: 0,
      bytes: 0,
      last_seq: -1,
      last_hash: GENESIS_HASH,
      errors: [],
      error_count: 0,
      workers: 0,
    };
  }

  report(seq: number, line: number, kind: WalErrorKind, message: string): void {
    const r = this.result;
    r.ok = false;
    r.error_count++;
    if (r.errors.length < MAX_REPORTED_ERRORS) r.errors.push({ run_id: r.run_id, seq, line, kind, message });
  }

  /** Reports a read failure at the next line. */
  unreadable(message: string): void {
    this.report(this.expectedSeq, this.linesSeen + 1, "unreadable", message);
  }

  private lost(): void {
    this.expectedSeq++;
    this.expectedPrev = undefined;
  }

  line(text: string, lineNo: number, final: boolean, ascii: boolean): void {
    this.linesSeen = lineNo;
    this.result.entries++;
    let raw: JsonValue;
    let tokensCanonical: boolean;
    try {
      ({ value: raw, canonical: tokensCanonical } = parseJsonCheckingTokens(text));
    } catch (err) {
      this.report(this.expectedSeq, lineNo, "invalid_json", tornOr(final, (err as Error).message));
      return this.lost();
    }
    const problem = entryShapeProblem(raw);
    if (problem) {
      this.report(this.expectedSeq, lineNo, "invalid_json", tornOr(final, problem));
      return this.lost();
    }
    const obj = raw as JsonObject;
    const seq = obj.seq as number;
    const { hash: computed, exact } = digestParsedEntry(obj, text, ascii && tokensCanonical);
    const hashOk = computed === obj.entry_hash && exact;
    const expectedSeq = this.expectedSeq;
    if (seq !== expectedSeq) {
      this.report(
        hashOk ? seq : expectedSeq,
        lineNo,
        "seq_gap",
        seq > expectedSeq
          ? `expected seq ${expectedSeq}, found ${seq} (entries missing)`
          : `expected seq ${expectedSeq}, found ${seq}`,
      );
    }
    const at = hashOk ? seq : expectedSeq;
    if (this.expectedPrev !== undefined && obj.prev_hash !== this.expectedPrev) {
      this.report(
        at,
        lineNo,
        "prev_hash_mismatch",
        `prev_hash ${String(obj.prev_hash)} does not match the previous entry_hash ${this.expectedPrev}`,
      );
    }
    if (!hashOk) {
      this.report(
        at,
        lineNo,
        "hash_mismatch",
        tornOr(
          final,
          computed !== obj.entry_hash
            ? `entry_hash ${String(obj.entry_hash)} does not match the content (computed ${computed})`
            : NOT_EXACT,
        ),
      );
    } else {
      this.result.last_seq = seq;
      this.result.last_hash = obj.entry_hash as string;
      if (final) this.report(seq, lineNo, "invalid_json", "torn tail: last line has no newline");
    }
    this.expectedSeq = at + 1;
    this.expectedPrev = obj.entry_hash as string;
  }

  /** The fast path: a canonical line that hashes and links right is taken without parsing. */
  take(bytes: Buffer, start: number, lineNo: number): number {
    const end = readCanonicalLine(bytes, start, bytes.length);
    if (end < 0 || bytes[end] !== LF) return -1;
    const c = confirmedLine;
    if (c.seq !== this.expectedSeq) return -1;
    if (this.expectedPrev !== undefined && !bytesEqualText(bytes, c.prevStart, c.prevEnd, this.expectedPrev))
      return -1;
    const entryHash = c.hash;
    this.linesSeen = lineNo;
    this.result.entries++;
    this.result.last_seq = c.seq;
    this.result.last_hash = entryHash;
    this.expectedSeq = c.seq + 1;
    this.expectedPrev = entryHash;
    return end + 1;
  }

  badUtf8(lineNo: number, final: boolean): void {
    this.linesSeen = lineNo;
    this.result.entries++;
    this.report(
      this.expectedSeq,
      lineNo,
      "invalid_utf8",
      tornOr(final, "line holds bytes that are not UTF-8"),
    );
    this.lost();
  }

  /**
   * Takes a batch a worker found clean, if it continues the chain exactly; the state machine
   * would then report nothing for it. Returns false when the batch must be fed line by line.
   */
  tryAdvance(batch: CleanBatch): boolean {
    if (batch.firstSeq !== this.expectedSeq) return false;
    if (this.expectedPrev !== undefined && batch.firstPrev !== this.expectedPrev) return false;
    this.linesSeen += batch.count;
    this.result.entries += batch.count;
    this.result.last_seq = batch.lastSeq;
    this.result.last_hash = batch.lastHash;
    this.expectedSeq = batch.lastSeq + 1;
    this.expectedPrev = batch.lastHash;
    return true;
  }

  /** Feeds a batch of complete lines through the exact state machine. */
  feed(region: Buffer): void {
    emitLines(region, this.linesSeen, false, this);
  }
}

/** A line checkBatch has verified, as its visitor sees it (valid during the call only). */
export interface VerifiedLine {
  /** Where the line starts in the region. */
  start: number;
  seq: number;
  /** The entry's timestamp, as toWalEntry reads it. */
  timestamp: number;
  decisionType: string;
  committed: boolean;
  entryHash: string;
  /** Builds the line's entry (toWalEntry of the parsed line), from what the check has read. */
  entry(): WalEntry;
}

/** Gets each line checkBatch verifies, in order. */
export interface BatchVisitor {
  line(l: VerifiedLine): void;
}

/** A verified line's facts, set for each line by its reader's `of`. */
abstract class LineFacts implements VerifiedLine {
  start = 0;
  seq = 0;
  timestamp = 0;
  decisionType = "";
  committed = false;
  entryHash = "";
  abstract entry(): WalEntry;
}

/** The line the token reader has just confirmed, read from its tokens. */
class ConfirmedLine extends LineFacts {
  private bytes: Buffer = EMPTY;
  of(bytes: Buffer, start: number): this {
    this.bytes = bytes;
    this.start = start;
    this.seq = confirmedLine.seq;
    this.timestamp = confirmedTimestamp(bytes);
    this.decisionType = confirmedDecisionType(bytes);
    this.committed = confirmedCommitted(bytes);
    this.entryHash = confirmedLine.hash;
    return this;
  }
  entry(): WalEntry {
    return entryOfConfirmedLine(this.bytes, undefined, this);
  }
}

/** A line the general parser read. */
class ParsedLine extends LineFacts {
  private built?: WalEntry;
  of(obj: JsonObject, start: number): this {
    const e = (this.built = toWalEntry(obj));
    this.start = start;
    this.seq = e.seq;
    this.timestamp = e.timestamp;
    this.decisionType = e.decision_type;
    this.committed = e.committed;
    this.entryHash = e.entry_hash;
    return this;
  }
  entry(): WalEntry {
    return this.built!;
  }
}

const EMPTY = Buffer.alloc(0);
/** What a visitor is shown: one of each, refilled per line (a line is valid during its call only). */
const confirmedView = new ConfirmedLine();
const parsedView = new ParsedLine();

/**
 * Checks complete lines (each ending with a newline) on their own: every line parses, hashes,
 * and links to the one before with the next seq. Returns the summary, or undefined when
 * anything is off (the coordinator then re-checks the batch line by line to name the break).
 * With `visitor`, each verified line is shown to it as it is checked (on undefined, what it was
 * shown is not to be used).
 */
export function checkBatch(region: Buffer, visitor?: BatchVisitor): CleanBatch | undefined {
  let clean = true;
  let lineStart = 0;
  let count = 0;
  let firstSeq = -1;
  let firstPrev = "";
  let lastSeq = -1;
  // The last entry_hash: the 64 bytes at lastHashAt in lastHashIn, or lastHash when -1.
  let lastHash = "";
  let lastHashIn = region;
  let lastHashAt = -1;
  const linksTo = (bytes: Buffer, prevStart: number, prevEnd: number): boolean =>
    lastHashAt < 0
      ? bytesEqualText(bytes, prevStart, prevEnd, lastHash)
      : prevEnd - prevStart === 64 && bytesEqual(bytes, prevStart, lastHashIn, lastHashAt, 64);
  const sink: LineSink = {
    take(bytes, start) {
      if (!clean) return -1;
      lineStart = start;
      const end = readCanonicalLine(bytes, start, bytes.length);
      if (end < 0 || bytes[end] !== LF) return -1;
      const c = confirmedLine;
      if (count === 0) {
        firstSeq = c.seq;
        firstPrev = bytes.toString("latin1", c.prevStart, c.prevEnd);
      } else if (c.seq !== lastSeq + 1 || !linksTo(bytes, c.prevStart, c.prevEnd)) {
        clean = false;
        return end + 1;
      }
      count++;
      lastSeq = c.seq;
      lastHashIn = bytes;
      lastHashAt = c.hashStart;
      visitor?.line(confirmedView.of(bytes, start));
      return end + 1;
    },
    line(text, _lineNo, _final, ascii) {
      if (!clean) return;
      let raw: JsonValue;
      let tokensCanonical: boolean;
      try {
        ({ value: raw, canonical: tokensCanonical } = parseJsonCheckingTokens(text));
      } catch {
        clean = false;
        return;
      }
      if (entryShapeProblem(raw)) {
        clean = false;
        return;
      }
      const obj = raw as JsonObject;
      const hash = obj.entry_hash as string;
      const digest = digestParsedEntry(obj, text, ascii && tokensCanonical);
      if (digest.hash !== hash || !digest.exact) {
        clean = false;
        return;
      }
      const seq = obj.seq as number;
      const prev = obj.prev_hash as string;
      if (count === 0) {
        firstSeq = seq;
        firstPrev = prev;
      } else if (seq !== lastSeq + 1 || !(lastHashAt < 0 ? prev === lastHash : prevIs(prev))) {
        clean = false;
        return;
      }
      count++;
      lastSeq = seq;
      lastHash = hash;
      lastHashAt = -1;
      // emitLines offered this line to take() first, which noted where it starts.
      visitor?.line(parsedView.of(obj, lineStart));
    },
    badUtf8() {
      clean = false;
    },
  };
  const prevIs = (prev: string) => bytesEqualText(lastHashIn, lastHashAt, lastHashAt + 64, prev);
  emitLines(region, 0, false, sink);
  if (!clean || count === 0) return undefined;
  if (lastHashAt >= 0) lastHash = lastHashIn.toString("latin1", lastHashAt, lastHashAt + 64);
  return { count, firstSeq, firstPrev, lastSeq, lastHash };
}

function bytesEqual(a: Uint8Array, aStart: number, b: Uint8Array, bStart: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}
