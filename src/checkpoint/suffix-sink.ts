/**
 * The line sink behind readWalSuffix: each line of the suffix must be a valid entry (checkLine's
 * verdict), carry the next seq and link to the entry before. Empty lines are skipped.
 *
 * A canonical line that continues the chain is taken on its bytes (takeFollowingEntry, the fast
 * path of `wal verify`); any other line goes through checkLine, which decides and names the
 * problem, so the verdicts and messages are checkLine's.
 */
import { checkLine } from "../wal/entry.js";
import type { WalEntry } from "../wal/entry.js";
import { confirmedLine } from "../wal/canonical-line.js";
import { takeFollowingEntry } from "../wal/following-entry.js";
import type { PullSink } from "../wal/pull-lines.js";
import { shown } from "../workspace/shown-path.js";

export interface SuffixProblem {
  line: number;
  /** The seq expected there, or the line's own when it is a seq or link break. */
  seq: number;
  message: string;
  /**
   * Bad lines after the newest valid one of an open run (onTornTail given): a torn tail, which
   * the writer's reopen cuts (docs/wal.md).
   */
  torn: boolean;
}

export class WalSuffixError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly seq: number,
    message: string,
  ) {
    super(`wal ${shown(file)}: line ${line} (seq ${seq}): ${message}`);
    this.name = "WalSuffixError";
  }
}

export class SuffixSink implements PullSink<WalEntry> {
  ready: WalEntry | undefined;
  stopped = false;
  problem: SuffixProblem | undefined;

  constructor(
    private readonly file: string,
    private prevHash: string,
    private nextSeq: number,
    private readonly onTornTail?: (message: string) => void,
  ) {}

  /** A break throws; a torn tail is reported to onTornTail. */
  end(): void {
    const p = this.problem;
    if (p && !p.torn) throw new WalSuffixError(this.file, p.line, p.seq, p.message);
    if (p)
      this.onTornTail?.(
        `wal ${shown(this.file)}: torn last line after seq ${this.nextSeq - 1} (${p.message}); ignored`,
      );
  }

  take(bytes: Buffer, start: number): number {
    if (this.problem) return -1;
    const entry = takeFollowingEntry(bytes, start, this.nextSeq, this.prevHash);
    if (!entry) return -1;
    this.accept(entry);
    return confirmedLine.end + 1;
  }

  line(text: string, lineNo: number): void {
    if (text === "") return;
    const check = checkLine(text);
    if (this.problem) {
      // A valid line after a bad one: the bad one is damage, not a torn tail.
      if (check.ok) this.stop(false);
      return;
    }
    if (!check.ok) return this.fail(lineNo, this.nextSeq, check.message, this.onTornTail !== undefined);
    const e = check.entry;
    if (e.seq !== this.nextSeq) return this.fail(lineNo, e.seq, `expected seq ${this.nextSeq}`, false);
    if (e.prev_hash !== this.prevHash)
      return this.fail(lineNo, e.seq, "prev_hash does not link to the previous entry", false);
    this.accept(e);
  }

  /** Read as the UTF-8 decoder reads it (replacement characters): checkLine names the problem. */
  badUtf8(lineNo: number, _final: boolean, bytes: Buffer): void {
    this.line(bytes.toString("utf8"), lineNo);
  }

  private accept(e: WalEntry): void {
    this.prevHash = e.entry_hash;
    this.nextSeq++;
    this.ready = e;
  }

  /**
   * A bad line of an open run may begin its torn tail: the lines after it are read on, and only
   * a valid one among them makes it damage. Any other problem ends the reading.
   */
  private fail(line: number, seq: number, message: string, torn: boolean): void {
    this.problem = { line, seq, message, torn };
    if (!torn) this.stopped = true;
  }

  private stop(torn: boolean): void {
    this.problem!.torn = torn;
    this.stopped = true;
  }
}
