/**
 * The group-commit WAL writer of one run (`runtime/wal/<run-id>.wal.jsonl`).
 *
 * - `append()` resolves only after its line is on disk (fdatasync), then after the commit gate.
 * - Group commit: everything queued while a sync is in flight goes out in one write + one sync.
 * - seq and prev_hash are assigned when append() is called, so the chain follows call order;
 *   a seq is never handed out twice by one writer.
 * - Fail closed: a write or sync error rejects that batch, every pending append and every later
 *   one. Only a new `WalWriter.open()` resumes; it re-derives the tail from disk.
 * - Open repairs a torn tail (last line without newline, unparsable, or with a bad hash): the
 *   bytes after the last valid entry go to a sidecar `<file>.torn-<utc>` and are cut; the chain
 *   continues from the last valid entry. Only the end of the file is read.
 */
import { constants as fsc } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { wrapError } from "../errors/errors.js";
import {
  FILE_MODE,
  durableMkdir,
  fsyncDir,
  writeAndDatasyncFd,
  writeThenDatasyncFd,
} from "../workspace/durable.js";
import { isRunId, type Workspace } from "../workspace/layout.js";
import {
  GENESIS_HASH,
  buildEntryWithLine,
  type WalEntry,
  type WalPosition,
  type WalRecord,
} from "./entry.js";
import { GroupPacing } from "./group-pacing.js";
import { LineBuffer } from "./line-buffer.js";
import { scanTail, type TailScan } from "./tail.js";
import { cutTornTail, type WalRepair } from "./tail-repair.js";
import { openUncommittedIndexForAppend, uncommittedRowLine, writeClosedMarker } from "./recovery.js";

export { newRunId } from "./run-files.js";

/** Fixed for the life of the process; read once (the getter is not free on the append path). */
const TIME_ORIGIN = performance.timeOrigin;

/** Epoch seconds with sub-millisecond digits, like Python's time.time(). */
export function epochSeconds(): number {
  return (TIME_ORIGIN + performance.now()) / 1000;
}

export interface WalWriterOptions {
  /**
   * Awaited after the fsync and before append() resolves, once per group with its newest
   * position (replication's QUORUM/ALL policies). A rejection rejects that group's appends
   * but does not fail the writer closed: the entries are durable locally.
   */
  commitGate?: (pos: WalPosition) => Promise<void>;
  /** Epoch seconds for new entries (tests). */
  clock?: () => number;
  /** Keep committed=false rows in the uncommitted index (default true). */
  uncommittedIndex?: boolean;
  /** When groups pipeline (default: measured as the writer runs; tests fix it). */
  pacing?: GroupPacing;
}

export type { WalRepair };

export class WalClosedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WalClosedError";
  }
}

interface Pending {
  entry: WalEntry;
  line: string;
  resolve: (e: WalEntry) => void;
  reject: (err: Error) => void;
}

const openFiles = new Set<string>();

/**
 * Longest the writer chains groups without the event loop turning. Groups synced with blocking
 * calls settle in the same tick and their callers append again in microtasks, so without a turn
 * timers and I/O (an in-process archiver, replication, a status request) would wait for the burst.
 */
const LOOP_TURN_EVERY_MS = 5;

/** Settled once: `.then()` on it queues a bare microtask (queueMicrotask adds an async resource per call). */
const SETTLED = Promise.resolve();

// The settle functions of the promise append() just made: a Promise executor runs synchronously
// in the constructor, so a module-level one hands them over without a closure per append.
let takenResolve: (e: WalEntry) => void = () => {};
let takenReject: (err: Error) => void = () => {};
function takeSettlers(resolve: (e: WalEntry) => void, reject: (err: Error) => void): void {
  takenResolve = resolve;
  takenReject = reject;
}

export class WalWriter {
  private queue: Pending[] = [];
  /** A group's write and sync are in progress. */
  private syncing = false;
  /** A flush is queued as a microtask (appends of the current tick join it). */
  private scheduled = false;
  /** Since when a probe waits for the event loop to turn (undefined: it turned since). */
  private turnAwaitedSince: number | undefined;
  private readonly pacing: GroupPacing;
  private failure: Error | undefined;
  private closing = false;
  private nextSeq: number;
  private lastHash: string;
  private durablePos: WalPosition | undefined;
  private readonly listeners = new Set<(pos: WalPosition) => void>();
  private idle: Array<() => void> = [];
  private indexFh: FileHandle | undefined;
  /** The newest group's bytes; reused by the next group (groups are written one at a time). */
  private readonly groupBytes = new LineBuffer();
  /** Commit gates started and not yet settled. */
  private gatesPending = 0;
  /** A failure's rejections, held until every gate started before them has settled. */
  private afterGates: Array<() => void> = [];

  private constructor(
    readonly ws: Workspace,
    readonly runId: string,
    readonly file: string,
    private fh: FileHandle | undefined,
    tail: TailScan,
    /** The torn-tail repair done by open(), if any. */
    readonly repair: WalRepair | undefined,
    private readonly opts: WalWriterOptions,
  ) {
    this.nextSeq = tail.last ? tail.last.seq + 1 : 0;
    this.lastHash = tail.last ? tail.last.entry_hash : GENESIS_HASH;
    this.durablePos = tail.last ? { runId, seq: tail.last.seq, entry_hash: tail.last.entry_hash } : undefined;
    this.pacing = opts.pacing ?? new GroupPacing();
  }

  /** Opens (creating if needed) the WAL of `runId`, repairing a torn tail. */
  static async open(ws: Workspace, runId: string, opts: WalWriterOptions = {}): Promise<WalWriter> {
    if (!isRunId(runId)) throw new Error(`wal open: invalid run id ${JSON.stringify(runId)}`);
    const file = ws.walFile(runId);
    if (openFiles.has(file)) throw new Error(`wal open ${runId}: already open in this process`);
    openFiles.add(file);
    let fh: FileHandle | undefined;
    try {
      await durableMkdir(ws.walDir);
      let created = false;
      try {
        fh = await open(file, fsc.O_RDWR | fsc.O_APPEND);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        fh = await open(file, fsc.O_RDWR | fsc.O_APPEND | fsc.O_CREAT | fsc.O_EXCL, FILE_MODE);
        created = true;
      }
      if (created) await fsyncDir(ws.walDir);
      const tail = await scanTail(fh);
      let repair: WalRepair | undefined;
      if (tail.validEnd < tail.size) {
        repair = await cutTornTail(fh, file, runId, tail);
      }
      return new WalWriter(ws, runId, file, fh, tail, repair, opts);
    } catch (err) {
      openFiles.delete(file);
      await fh?.close().catch(() => {});
      throw wrapError(`wal open ${runId}`, err);
    }
  }

  /** Newest durable position (undefined while the run has no entry). */
  get durablePosition(): WalPosition | undefined {
    return this.durablePos;
  }

  /** seq the next append will get. */
  get nextSequence(): number {
    return this.nextSeq;
  }

  /** Set once the writer failed closed. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Called with the newest durable position after every group's sync. Returns an unsubscribe. */
  onDurable(cb: (pos: WalPosition) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Appends one entry; resolves with it once it is on disk (and past the commit gate). */
  append(record: WalRecord): Promise<WalEntry> {
    if (this.failure) {
      const err = new WalClosedError(`wal ${this.runId}: writer failed closed: ${this.failure.message}`);
      return new Promise((_, reject) => this.afterEarlierGates(() => reject(err)));
    }
    if (this.closing || !this.fh)
      return Promise.reject(new WalClosedError(`wal ${this.runId}: writer is closed`));
    let built: { entry: WalEntry; line: string };
    try {
      built = buildEntryWithLine(record, this.nextSeq, this.lastHash, (this.opts.clock ?? epochSeconds)());
    } catch (err) {
      return Promise.reject(err);
    }
    this.nextSeq++;
    this.lastHash = built.entry.entry_hash;
    // One shared executor instead of a closure per append (see takeSettlers).
    const acked = new Promise<WalEntry>(takeSettlers);
    this.queue.push({ entry: built.entry, line: built.line, resolve: takenResolve, reject: takenReject });
    this.pacing.onAppend();
    if (this.syncing) return acked;
    if (this.pacing.startEarly(this.queue.length)) {
      // The other half builds its entries while this one syncs.
      this.flush();
    } else {
      this.scheduleFlush();
    }
    return acked;
  }

  /** Flushes after the current microtasks, so that appends issued together share one sync. */
  private scheduleFlush(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const now = performance.now();
    if (this.turnAwaitedSince === undefined) {
      this.turnAwaitedSince = now;
      setImmediate(this.loopTurned);
    } else if (now - this.turnAwaitedSince >= LOOP_TURN_EVERY_MS) {
      // Behind the probe: timers and I/O run first.
      setImmediate(this.scheduledFlush);
      return;
    }
    void SETTLED.then(this.scheduledFlush);
  }

  private readonly loopTurned = (): void => {
    this.turnAwaitedSince = undefined;
  };

  private readonly scheduledFlush = (): void => {
    this.scheduled = false;
    if (!this.syncing && this.queue.length > 0 && !this.failure) this.flush();
  };

  /**
   * Writes and syncs everything queued as one group, then settles it. Pipelined (see
   * group-pacing.ts) the next group's write and sync start before this group's callers resume;
   * merged, they resume first and their next appends join the next group. A group synced with
   * blocking calls settles in the same tick: no promise between its sync and its callers.
   */
  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.syncing = true;
    const pipelined = this.pacing.pipelining;
    this.pacing.onGroupStart(batch.length);
    let synced: Promise<void> | undefined;
    try {
      synced = this.writeBatch(batch, pipelined);
    } catch (err) {
      this.groupFailed(err, batch);
      return;
    }
    if (synced === undefined) this.groupDurable(batch);
    else
      synced.then(
        () => this.groupDurable(batch),
        (err: unknown) => this.groupFailed(err, batch),
      );
  }

  private groupFailed(err: unknown, batch: Pending[]): void {
    this.syncing = false;
    this.failClosed(err, batch);
    this.wakeIdle();
  }

  /** After a group's sync: publishes its position, starts the next group, settles this one. */
  private groupDurable(batch: Pending[]): void {
    const last = batch[batch.length - 1].entry;
    const pos: WalPosition = { runId: this.runId, seq: last.seq, entry_hash: last.entry_hash };
    this.durablePos = pos;
    for (const cb of this.listeners) {
      try {
        cb(pos);
      } catch {
        // A listener's failure is its own; the entries are durable.
      }
    }
    this.syncing = false;
    this.pacing.onGroupSynced(batch.length + this.queue.length);
    // Settled before the next group is written: its callers resume only after this tick anyway,
    // and a failure of that write then reaches no one before this group's acknowledgements.
    this.settle(batch, pos);
    if (this.pacing.pipelining && this.queue.length > 0 && !this.failure) this.flush();
    this.pacing.onSettled(batch.length);
    if (this.syncing) return;
    if (this.queue.length > 0) this.scheduleFlush();
    else this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idle;
    this.idle = [];
    for (const w of waiters) w();
  }

  private settle(batch: Pending[], pos: WalPosition): void {
    const gate = this.opts.commitGate;
    if (!gate) {
      for (const p of batch) p.resolve(p.entry);
      return;
    }
    // The gate runs beside the next group's write: it may wait on followers.
    const gated = gate(pos);
    this.gatesPending++;
    gated.then(
      () => {
        for (const p of batch) p.resolve(p.entry);
        this.gateSettled();
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        for (const p of batch) p.reject(e);
        this.gateSettled();
      },
    );
  }

  private gateSettled(): void {
    if (--this.gatesPending > 0 || this.afterGates.length === 0) return;
    const held = this.afterGates;
    this.afterGates = [];
    for (const f of held) f();
  }

  /**
   * Runs `f` (a failure's rejections) once the gates of the groups durable before the failure
   * have settled, so their callers see those acknowledgements first.
   */
  private afterEarlierGates(f: () => void): void {
    if (this.gatesPending === 0) f();
    else this.afterGates.push(f);
  }

  /**
   * One write and one fdatasync per file; `pipelined`: the sync runs on the thread pool. Returns
   * undefined when both were blocking calls and the group is already durable.
   */
  private writeBatch(batch: Pending[], pipelined: boolean): Promise<void> | undefined {
    const fd = this.fh!.fd;
    const out = this.groupBytes;
    out.reset();
    let rows = "";
    for (const p of batch) {
      out.add(p.line);
      if (!p.entry.committed && this.opts.uncommittedIndex !== false) {
        rows += uncommittedRowLine({ run_id: this.runId, seq: p.entry.seq, entry_hash: p.entry.entry_hash });
      }
    }
    const data = out.bytes();
    if (rows) return this.writeBatchWithIndex(fd, data, rows, pipelined);
    if (pipelined) return writeThenDatasyncFd(fd, data);
    // Blocking: the thread-pool round trips of the async API cost a third of the throughput of
    // one caller awaiting each append.
    writeAndDatasyncFd(fd, data);
    return undefined;
  }

  /** The index row of every acknowledged intent is durable too (both syncs run together). */
  private async writeBatchWithIndex(fd: number, data: Buffer, rows: string, pipelined: boolean) {
    // `data` stays valid across this wait: the next group reuses its memory only after this
    // group has settled.
    this.indexFh ??= await openUncommittedIndexForAppend(this.ws);
    const idx = this.indexFh.fd;
    const rowBytes = Buffer.from(rows, "utf8");
    // Both settle before a failure closes the files: no sync is left running on a closed fd.
    const synced = await Promise.allSettled([
      writeAndSync(fd, data, pipelined),
      writeAndSync(idx, rowBytes, pipelined),
    ]);
    for (const r of synced) if (r.status === "rejected") throw r.reason;
  }

  private failClosed(err: unknown, batch: Pending[]): void {
    const cause = wrapError(`wal append ${this.runId}`, err);
    this.failure = cause;
    const rejected = new WalClosedError(`wal ${this.runId}: writer failed closed: ${cause.message}`, {
      cause,
    });
    const pending = batch.concat(this.queue);
    this.queue = [];
    this.afterEarlierGates(() => {
      for (const p of pending) p.reject(rejected);
    });
    void this.releaseHandles();
  }

  private async releaseHandles(): Promise<void> {
    const fh = this.fh;
    const idx = this.indexFh;
    this.fh = undefined;
    this.indexFh = undefined;
    openFiles.delete(this.file);
    await fh?.close().catch(() => {});
    await idx?.close().catch(() => {});
  }

  /** Resolves when every append issued so far is settled. */
  async drain(): Promise<void> {
    if (!this.syncing && !this.scheduled && this.queue.length === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /**
   * Waits for pending appends, then closes. With `markClosed`, also writes the run's closed
   * marker (clean shutdown) — only if the writer did not fail.
   */
  async close(opts: { markClosed?: boolean; reason?: string } = {}): Promise<void> {
    if (this.closing) return;
    await this.drain();
    this.closing = true;
    const failed = this.failure;
    await this.releaseHandles();
    if (opts.markClosed && !failed) {
      await writeClosedMarker(this.ws, {
        run_id: this.runId,
        closed_at: new Date().toISOString(),
        last_seq: this.nextSeq - 1,
        last_hash: this.lastHash,
        ...(opts.reason ? { reason: opts.reason } : {}),
      });
    }
  }
}

/** write() then fdatasync() on the raw fd, blocking or (pipelined) with the sync on the thread pool. */
function writeAndSync(fd: number, data: Buffer, pipelined: boolean): Promise<void> {
  try {
    if (pipelined) return writeThenDatasyncFd(fd, data);
    writeAndDatasyncFd(fd, data);
    return Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}
