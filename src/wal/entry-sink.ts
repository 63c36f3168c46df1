/**
 * The line sink behind readWalEntries: turns WAL lines into entries, checking each one's hash
 * and its link to the one before.
 *
 * A line provably in the canonical form has its hash checked on its own bytes (the fast path of
 * `wal verify`, takeFollowingEntry) and its entry built from its tokens; any other line, or one
 * whose seq or link is off, is parsed with the token check and re-canonicalized, which decides
 * and names the problem. The fast path only ever confirms, so the verdicts and messages are the
 * lossless parser's.
 */
import { parseJsonCheckingTokens, type JsonValue } from "../json/canonical.js";
import {
  GENESIS_HASH,
  entryShapeProblem,
  digestParsedEntry,
  toWalEntry,
  type JsonObject,
  type WalEntry,
} from "./entry.js";
import type { WalError, WalErrorKind } from "./chain.js";
import { confirmedLine } from "./canonical-line.js";
import { takeFollowingEntry } from "./following-entry.js";
import { LF } from "./line-scan.js";
import type { PullSink } from "./pull-lines.js";

export interface ReadEntry {
  entry: WalEntry;
  lineNo: number;
}

const SEQ_PREFIX = /^\{"seq":(\d+),/;
const OPEN_SEQ = Buffer.from('{"seq":', "latin1");
const BACKSLASH = 0x5c;

export class WalReadError extends Error {
  constructor(readonly error: WalError) {
    super(`wal ${error.run_id}: ${error.kind} at seq ${error.seq}, line ${error.line}: ${error.message}`);
    this.name = "WalReadError";
  }
}

export class EntrySink implements PullSink<ReadEntry> {
  /** The entry of the last line, until the reader takes it. */
  ready: ReadEntry | undefined;
  /** The first problem met; the line after it stops the reading (moreAfterError). */
  pendingError: WalError | undefined;
  /** A bad line followed by more lines: not a torn tail. */
  moreAfterError = false;
  stopped = false;
  private prevSeq: number;
  /** The hash the next entry must point to (undefined when reading starts past seq 0). */
  private prevHash: string | undefined;

  /** `"name"` of each wanted decision type, as its bytes (see skipsOtherType). */
  private readonly quotedTypes: Buffer[] | undefined;

  constructor(
    private readonly runId: string,
    private readonly fromSeq: number,
    private readonly verify: boolean,
    /** Whether a bad last line (a torn tail) ends the reading quietly. */
    private readonly tolerateTornTail = true,
    /** Only entries of these decision types are handed out (undefined: all). */
    private readonly decisionTypes?: ReadonlySet<string>,
  ) {
    this.prevSeq = fromSeq - 1;
    this.prevHash = fromSeq === 0 ? GENESIS_HASH : undefined;
    this.quotedTypes = decisionTypes && [...decisionTypes].map((t) => Buffer.from(JSON.stringify(t), "utf8"));
  }

  private handOut(entry: WalEntry, lineNo: number): void {
    if (!this.decisionTypes || this.decisionTypes.has(entry.decision_type)) this.ready = { entry, lineNo };
  }

  /**
   * Unverified and filtered, a line is skipped unparsed when its bytes prove that it holds no
   * wanted entry: without a backslash a JSON string's bytes are its characters, so a line whose
   * decision_type is a wanted one holds that name in quotes. Where to resume, or -1 to parse it.
   */
  private skipsOtherType(bytes: Buffer, start: number): number {
    const nl = bytes.indexOf(LF, start);
    if (nl < 0) return -1;
    const line = bytes.subarray(start, nl);
    if (line.indexOf(BACKSLASH) >= 0) return -1;
    for (const quoted of this.quotedTypes!) if (line.indexOf(quoted) >= 0) return -1;
    return nl + 1;
  }

  private fail(seq: number, line: number, kind: WalErrorKind, message: string): void {
    this.pendingError = { run_id: this.runId, seq, line, kind, message };
  }

  /** The fast path (see the file's comment); -1 hands the line to `line`. */
  take(bytes: Buffer, start: number, lineNo: number): number {
    if (this.pendingError) return -1;
    if (!this.verify) return this.quotedTypes ? this.skipsOtherType(bytes, start) : -1;
    if (this.fromSeq > 0) {
      const seq = seqPrefix(bytes, start);
      if (seq >= 0 && seq < this.fromSeq) {
        const nl = bytes.indexOf(LF, start);
        return nl < 0 ? -1 : nl + 1;
      }
    }
    const entry = takeFollowingEntry(bytes, start, this.prevSeq >= 0 ? this.prevSeq + 1 : -1, this.prevHash);
    if (!entry) return -1;
    this.prevSeq = entry.seq;
    this.prevHash = entry.entry_hash;
    this.handOut(entry, lineNo);
    return confirmedLine.end + 1;
  }

  line(text: string, lineNo: number, _final: boolean, ascii: boolean): void {
    if (this.pendingError) return this.more();
    if (this.fromSeq > 0) {
      const m = SEQ_PREFIX.exec(text);
      if (m && Number(m[1]) < this.fromSeq) return;
    }
    let raw: JsonValue;
    let tokensCanonical: boolean;
    try {
      ({ value: raw, canonical: tokensCanonical } = parseJsonCheckingTokens(text));
    } catch (err) {
      return this.fail(this.prevSeq + 1, lineNo, "invalid_json", (err as Error).message);
    }
    const problem = entryShapeProblem(raw);
    if (problem) return this.fail(this.prevSeq + 1, lineNo, "invalid_json", problem);
    const obj = raw as JsonObject;
    const entry = toWalEntry(obj);
    if (entry.seq < this.fromSeq) return;
    if (this.verify) {
      const digest = digestParsedEntry(obj, text, ascii && tokensCanonical);
      if (digest.hash !== entry.entry_hash || !digest.exact) {
        return this.fail(this.prevSeq + 1, lineNo, "hash_mismatch", "entry_hash does not match the content");
      }
      if (this.prevHash !== undefined && entry.prev_hash !== this.prevHash) {
        return this.fail(
          entry.seq,
          lineNo,
          "prev_hash_mismatch",
          "prev_hash does not match the previous entry",
        );
      }
      if (this.prevSeq >= 0 && entry.seq !== this.prevSeq + 1) {
        return this.fail(
          entry.seq,
          lineNo,
          "seq_gap",
          `expected seq ${this.prevSeq + 1}, found ${entry.seq}`,
        );
      }
      this.prevHash = entry.entry_hash;
    }
    this.prevSeq = entry.seq;
    this.handOut(entry, lineNo);
  }

  badUtf8(lineNo: number): void {
    if (this.pendingError) this.more();
    else this.fail(this.prevSeq + 1, lineNo, "invalid_utf8", "line holds bytes that are not UTF-8");
  }

  /** Throws the problem met, unless it is a tolerated torn tail. */
  end(): void {
    const e = this.pendingError;
    if (e && (this.moreAfterError || !this.tolerateTornTail)) throw new WalReadError(e);
  }

  private more(): void {
    this.moreAfterError = true;
    this.stopped = true;
  }
}

/** The seq of a line starting `{"seq":<digits>,` (what SEQ_PREFIX matches), else -1. */
function seqPrefix(bytes: Buffer, start: number): number {
  let p = start + OPEN_SEQ.length;
  if (p >= bytes.length || bytes.compare(OPEN_SEQ, 0, OPEN_SEQ.length, start, p) !== 0) return -1;
  let seq = 0;
  const digits = p;
  while (p < bytes.length && bytes[p] >= 0x30 && bytes[p] <= 0x39) seq = seq * 10 + bytes[p++] - 0x30;
  return p > digits && bytes[p] === 0x2c ? seq : -1;
}
