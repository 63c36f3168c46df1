/**
 * The leader's view of its WAL files for replication: which runs exist, the durable tail of each,
 * and byte-identical lines from a given seq. Files are scanned incrementally (each byte once);
 * a sparse seq→offset index (one point every INDEX_STRIDE entries) makes a read from any seq
 * cheap without holding entries in memory. A line is served only once it is complete (ends with
 * "\n") and, for the run a writer in this process appends to, once the writer reported it durable.
 */
import { open, stat } from "node:fs/promises";
import { setLongInterval, setLongTimeout, type Timer } from "../workspace/timer.js";
import type { Workspace } from "../workspace/layout.js";
import { listWalRunFiles } from "../wal/run-files.js";

const INDEX_STRIDE = 256;
/** Entry timestamps kept for the newest entries of each run (for lag in seconds). */
const TIME_RING = 1 << 16;

interface RunScan {
  runId: string;
  file: string;
  /** Bytes scanned so far (always at a line boundary). */
  scanned: number;
  tailSeq: number;
  tailHash: string | null;
  /** Sparse index: [seq, byte offset of its line]. */
  index: Array<[number, number]>;
  /** Entry `timestamp` (epoch seconds) of the newest TIME_RING entries, by seq % TIME_RING. */
  times: Float64Array | null;
}

export interface RunTail {
  run_id: string;
  last_seq: number;
  last_hash: string | null;
}

export interface WalBatch {
  runId: string;
  lines: string[];
  /** seq of the first line, or -1 when empty. */
  firstSeq: number;
  tailSeq: number;
}

/** seq of a WAL line; the writer puts `seq` first, so the fast path avoids a full parse. */
export function seqOfLine(line: string): number {
  const m = /^\{"seq":(\d+),/.exec(line);
  if (m) return Number(m[1]);
  const v = (JSON.parse(line) as { seq?: unknown }).seq;
  if (typeof v !== "number") throw new Error("WAL line without seq");
  return v;
}

function timestampOfLine(line: string): number {
  const m = /"timestamp":(-?[0-9.]+(?:[eE][-+]?\d+)?)[,}]/.exec(line);
  return m ? Number(m[1]) : NaN;
}

function hashOfLine(line: string): string | null {
  const m = /"entry_hash":"([0-9a-f]{64})"\}$/.exec(line);
  return m ? m[1] : null;
}

export class WalSource {
  private readonly runs = new Map<string, RunScan>();
  private readonly durableCap = new Map<string, number>();
  private version = 0;
  private readonly waiters = new Set<() => void>();
  private poller: Timer | null = null;
  private refreshing: Promise<void> | null = null;

  constructor(
    private readonly ws: Workspace,
    private readonly pollMs = 50,
  ) {}

  /** The writer of this process appends to `runId`; cap what we serve at its durable seq. */
  limitRun(runId: string, durableSeq: number): void {
    this.durableCap.set(runId, durableSeq);
  }

  /** The writer made `seq` of `runId` durable: raise the cap and wake long-polls. */
  notifyDurable(runId: string, seq: number): void {
    if ((this.durableCap.get(runId) ?? -1) >= seq) return;
    this.durableCap.set(runId, seq);
    // The line may have been scanned already (written before its fsync): wake the long-polls
    // after the scan whether or not it found new bytes.
    void this.refresh().then(
      () => this.bump(),
      () => this.bump(),
    );
  }

  /** Rescans the WAL folder; wakes long-polls when anything grew. Concurrent calls share one scan. */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing.then(() => this.refreshOnce());
    return this.refreshOnce();
  }

  private refreshOnce(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = this.scanAll().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async scanAll(): Promise<void> {
    let grew = false;
    for (const { run_id: runId } of await listWalRunFiles(this.ws.walDir)) {
      let r = this.runs.get(runId);
      if (!r) {
        r = {
          runId,
          file: this.ws.walFile(runId),
          scanned: 0,
          tailSeq: -1,
          tailHash: null,
          index: [],
          times: null,
        };
        this.runs.set(runId, r);
        grew = true;
      }
      if (await this.scanRun(r)) grew = true;
    }
    if (grew) this.bump();
  }

  private async scanRun(r: RunScan): Promise<boolean> {
    const st = await stat(r.file).catch(() => undefined);
    if (!st || st.size <= r.scanned) return false;
    const fh = await open(r.file, "r");
    try {
      let pos = r.scanned;
      let carry = "";
      let carryStart = pos;
      const buf = Buffer.allocUnsafe(1 << 20);
      let grew = false;
      while (pos < st.size) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, st.size - pos), pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        const text = carry + buf.toString("utf8", 0, bytesRead);
        let lineStart = 0;
        let offset = carryStart;
        for (;;) {
          const nl = text.indexOf("\n", lineStart);
          if (nl < 0) break;
          const line = text.slice(lineStart, nl);
          const lineBytes = Buffer.byteLength(line, "utf8") + 1;
          if (line.length > 0) {
            const seq = seqOfLine(line);
            if (seq % INDEX_STRIDE === 0 || r.index.length === 0) r.index.push([seq, offset]);
            r.tailSeq = seq;
            r.tailHash = hashOfLine(line);
            r.times ??= new Float64Array(TIME_RING);
            r.times[seq % TIME_RING] = timestampOfLine(line);
            grew = true;
          }
          offset += lineBytes;
          lineStart = nl + 1;
        }
        carry = text.slice(lineStart);
        carryStart = offset;
        r.scanned = offset;
      }
      return grew;
    } finally {
      await fh.close();
    }
  }

  private bump(): void {
    this.version++;
    for (const w of [...this.waiters]) w();
  }

  servableTail(r: RunScan): number {
    const cap = this.durableCap.get(r.runId);
    return cap === undefined ? r.tailSeq : Math.min(cap, r.tailSeq);
  }

  /** Durable tail per run (seq −1 for an empty run). */
  tails(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.runs.values()) out.set(r.runId, this.servableTail(r));
    return out;
  }

  listRuns(): RunTail[] {
    return [...this.runs.values()]
      .sort((a, b) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0))
      .map((r) => ({
        run_id: r.runId,
        last_seq: this.servableTail(r),
        last_hash: this.servableTail(r) === r.tailSeq ? r.tailHash : null,
      }));
  }

  /** The `timestamp` of entry `seq` of `runId` (epoch seconds), or null when unknown. */
  async entryTimestamp(runId: string, seq: number): Promise<number | null> {
    const r = this.runs.get(runId);
    if (!r || seq > r.tailSeq || seq < 0) return null;
    if (r.times && seq > r.tailSeq - TIME_RING) {
      const t = r.times[seq % TIME_RING];
      return Number.isNaN(t) ? null : t;
    }
    const batch = await this.readLines(r, seq, 1, 1 << 20);
    const t = batch.lines.length ? timestampOfLine(batch.lines[0]) : NaN;
    return Number.isNaN(t) ? null : t;
  }

  hasRun(runId: string): boolean {
    return this.runs.has(runId);
  }

  /**
   * Up to `limit` lines (and about `maxBytes`) of `runId` starting at `fromSeq`. When none is
   * available yet, waits up to `waitMs` for the WAL to grow (long-poll), then answers, maybe empty.
   */
  async read(
    runId: string,
    fromSeq: number,
    limit: number,
    waitMs: number,
    maxBytes = 4 << 20,
  ): Promise<WalBatch> {
    await this.refresh();
    const deadline = Date.now() + waitMs;
    for (;;) {
      // Read the version before checking, so a change between the check and the wait is not lost.
      const seen = this.version;
      const r = this.runs.get(runId);
      if (r && this.servableTail(r) >= fromSeq) return this.readLines(r, fromSeq, limit, maxBytes);
      const left = deadline - Date.now();
      if (left <= 0) return { runId, lines: [], firstSeq: -1, tailSeq: r ? this.servableTail(r) : -1 };
      await this.waitForChange(left, seen);
    }
  }

  /** Resolves when any WAL grows (or grew since version `since`), or after `ms`. */
  waitForChange(ms: number, since = this.version): Promise<void> {
    if (this.version !== since) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        timer.clear();
        this.waiters.delete(done);
        if (this.waiters.size === 0 && this.poller) {
          this.poller.clear();
          this.poller = null;
        }
        resolve();
      };
      const timer = setLongTimeout(done, ms);
      this.waiters.add(done);
      if (!this.poller) {
        this.poller = setLongInterval(() => void this.refresh().catch(() => {}), this.pollMs).unref();
      }
    });
  }

  private async readLines(r: RunScan, fromSeq: number, limit: number, maxBytes: number): Promise<WalBatch> {
    const upTo = this.servableTail(r);
    let start = 0;
    for (const [seq, off] of r.index) {
      if (seq <= fromSeq) start = off;
      else break;
    }
    const lines: string[] = [];
    let firstSeq = -1;
    let bytes = 0;
    const fh = await open(r.file, "r");
    try {
      const buf = Buffer.allocUnsafe(1 << 18);
      let pos = start;
      let carry = "";
      outer: while (pos < r.scanned) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, r.scanned - pos), pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        const text = carry + buf.toString("utf8", 0, bytesRead);
        let lineStart = 0;
        for (;;) {
          const nl = text.indexOf("\n", lineStart);
          if (nl < 0) break;
          const line = text.slice(lineStart, nl);
          lineStart = nl + 1;
          if (line.length === 0) continue;
          const seq = seqOfLine(line);
          if (seq < fromSeq) continue;
          if (seq > upTo) break outer;
          if (firstSeq < 0) firstSeq = seq;
          lines.push(line);
          bytes += line.length + 1;
          if (lines.length >= limit || bytes >= maxBytes) break outer;
        }
        carry = text.slice(lineStart);
      }
    } finally {
      await fh.close();
    }
    return { runId: r.runId, lines, firstSeq, tailSeq: upTo };
  }

  close(): void {
    this.poller?.clear();
    this.poller = null;
    for (const w of [...this.waiters]) w();
  }
}
