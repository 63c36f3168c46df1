/**
 * Writes an archive's entries under a staging folder: every file with its mode and mtime, every
 * folder with its mode, everything durable at `finish()`.
 *
 * The file-system calls run on a worker thread (staging-worker.ts), in archive order, with
 * blocking calls as tar makes them. Creating 8,421 files costs as much as decrypting,
 * decompressing, parsing and hashing them; on one thread the two add up, on two they overlap.
 * An extraction that fits in one batch runs on this thread at `finish()`: there is nothing to
 * overlap, and starting the worker would cost more than the batch. A worker takes about a tenth
 * of a second to start on a small virtual machine, about as long as a large archive's manifest
 * takes to read: given the archive's size, the writer starts the worker at once when the archive
 * cannot fit one batch, so that the two overlap.
 * File bytes and names are copied into slots of shared memory (BATCH_BYTES each) that the
 * worker is told to run, at most MAX_BATCHES_IN_FLIGHT at a time, so memory stays bounded
 * whatever the archive's size, and nothing is allocated per batch (buffers handed back and
 * forth made new ArrayBuffer objects on each side, and their garbage forced collections). A
 * failure on the worker (disk full, permissions) is raised by the next `write`, `end`,
 * `file` or `dir` call, or by `finish()`.
 */
import { chmodSync, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { FileSystemSync, FsyncPool, fsyncDir } from "../workspace/durable.js";
import { fsPath, hasEscapedBytes, nameToBytes } from "../workspace/raw-name.js";
import { AUDIT_KEY_ENTRY, MANIFEST_NAME } from "./manifest.js";
import { MAX_NAME_BYTES } from "./entry-policy.js";
import type { EntryInfo, ExtractHandler, FileSink } from "./tar-reader.js";
import { CLOSE, MKDIR, OPEN, OP_WORDS, REPLACE, StagingApplier, WRITE } from "./staging-worker.js";
import { restoredMode, umaskOf } from "./restored-mode.js";
import type { StagingBatch, StagingFailure, StagingReply, StagingSlot } from "./staging-worker.js";

const BATCH_BYTES = 256 * 1024;
/**
 * Batches queued for the worker at most. A workspace's archive holds its thousands of small
 * files together (the backlog's task files), where creating them is the slower half, and its
 * large files after them, where decompressing and hashing is: room for 16 batches of small files
 * lets the main thread work ahead through them and reach the large ones while the worker is
 * still creating, instead of the two taking turns.
 */
const MAX_BATCHES_IN_FLIGHT = 16;
/**
 * Batches of few files (bulk bytes, which the worker writes faster than they are inflated) queued
 * at most: working ahead there gains nothing, and each batch more is memory.
 */
const MAX_BULK_BATCHES_IN_FLIGHT = 4;
/** A batch that opens fewer files than this counts as bulk. */
const BULK_BELOW_FILES = 16;
const MAX_OPS_PER_BATCH = 4096;
/** Bytes (file contents and names) sent to the worker between two early write-outs (see `send`). */
const WRITE_OUT_EVERY_BYTES = 16 * 1024 * 1024;

function failureError(f: StagingFailure): Error {
  return Object.assign(new Error(f.message), {
    code: f.code,
    errno: f.errno,
    syscall: f.syscall,
    path: f.path,
  });
}

export class StagingWriter implements ExtractHandler {
  private readonly dirModes = new Map<string, number>();
  private readonly made = new Set<string>([""]);
  private readonly written: string[] = [];
  private readonly fsync: boolean;
  /** The process's umask: restored modes are masked by it (restored-mode.ts). */
  private readonly umask: number;
  /** Started by the first batch sent before `finish()`, or at once for a large archive. */
  private worker?: Worker;
  /** Every slot made so far, the free ones, and the one being filled (see staging-worker.ts). */
  private readonly slots: { buffers: StagingSlot; data: Buffer; ops: Float64Array; sent: boolean }[] = [];
  private readonly free: number[] = [];
  private slot = this.takeSlot();
  private data = this.slots[this.slot]!.data;
  private ops = this.slots[this.slot]!.ops;
  private count = 0;
  private used = 0;
  private inFlight = 0;
  private bulkInFlight = 0;
  /** Per slot, whether the batch in it is bulk (see MAX_BULK_BATCHES_IN_FLIGHT). */
  private readonly bulk: boolean[] = [];
  /** Files opened in the batch being filled. */
  private opened = 0;
  private failure?: Error;
  private wake?: () => void;
  private closed = false;
  /** Bytes sent to the worker since the last early write-out started. */
  private sinceWriteOut = 0;
  /** The early write-out running now (a syncfs of the staging file system). */
  private writingOut?: Promise<boolean>;
  /** What runs the syncfs of the write-outs and of finish(). */
  private syncer?: Promise<FileSystemSync>;

  /**
   * `root` must exist; `fsync: false` for throw-away extractions (verify's temp folder);
   * `archiveBytes`: the size of the archive to be read, when known.
   */
  constructor(
    readonly root: string,
    opts: { fsync?: boolean; archiveBytes?: number } = {},
  ) {
    this.fsync = opts.fsync ?? true;
    this.umask = umaskOf(root);
    // More than a batch of archive almost always extracts to more batches (only an encrypted
    // archive's encoding makes it larger than what it holds); when not, the worker takes the one.
    if ((opts.archiveBytes ?? 0) > BATCH_BYTES) {
      this.worker = this.startWorker();
      if (this.fsync) this.syncer = FileSystemSync.start(root);
    }
  }

  private async syncFileSystem(): Promise<boolean> {
    this.syncer ??= FileSystemSync.start(this.root);
    return (await this.syncer).flush();
  }

  private startWorker(): Worker {
    const worker = new Worker(new URL("./staging-worker.js", import.meta.url), {
      workerData: { root: this.root },
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // An abandoned extraction must not keep the process alive; settle() refs it while waiting.
    worker.unref();
    worker.on("message", (reply: StagingReply) => {
      if (reply.failed) this.failure ??= failureError(reply.failed);
      this.free.push(reply.slot);
      this.inFlight--;
      if (this.bulk[reply.slot]) this.bulkInFlight--;
      this.wakeUp();
    });
    worker.on("error", (err) => {
      this.failure ??= err;
      this.inFlight = 0;
      this.bulkInFlight = 0;
      this.wakeUp();
    });
    return worker;
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private takeSlot(): number {
    const reuse = this.free.pop();
    if (reuse !== undefined) return reuse;
    const buffers: StagingSlot = {
      data: new SharedArrayBuffer(BATCH_BYTES),
      ops: new SharedArrayBuffer(MAX_OPS_PER_BATCH * OP_WORDS * Float64Array.BYTES_PER_ELEMENT),
    };
    this.slots.push({
      buffers,
      data: Buffer.from(buffers.data),
      ops: new Float64Array(buffers.ops),
      sent: false,
    });
    return this.slots.length - 1;
  }

  /** Sends the batch being filled; `last` (from `finish()`): there will be no other. */
  private send(last = false): void {
    if (!this.count) return;
    const slot = this.slots[this.slot]!;
    if (last && !this.worker) {
      try {
        new StagingApplier(this.root).apply(slot.data, slot.ops, this.count);
      } catch (err) {
        this.failure ??= err as Error;
      }
      this.count = 0;
      this.used = 0;
      return;
    }
    this.worker ??= this.startWorker();
    const batch: StagingBatch = { slot: this.slot, count: this.count };
    if (!slot.sent) batch.buffers = slot.buffers;
    slot.sent = true;
    this.worker.postMessage(batch);
    this.inFlight++;
    this.bulk[this.slot] = this.opened < BULK_BELOW_FILES;
    if (this.bulk[this.slot]) this.bulkInFlight++;
    this.opened = 0;
    this.sinceWriteOut += this.used;
    if (this.fsync && this.sinceWriteOut >= WRITE_OUT_EVERY_BYTES && !this.writingOut) {
      // The disk writes back what is already extracted while the rest is: left to the final
      // syncfs, all of it would be written only after the last file, and the restore would
      // wait for every byte then.
      this.sinceWriteOut = 0;
      this.writingOut = this.syncFileSystem().finally(() => (this.writingOut = undefined));
    }
    this.slot = this.takeSlot();
    this.data = this.slots[this.slot]!.data;
    this.ops = this.slots[this.slot]!.ops;
    this.count = 0;
    this.used = 0;
  }

  /** Waits while too many batches are queued (or, with `all`, until none is). */
  private async settle(all = false): Promise<void> {
    this.check();
    const worker = this.worker;
    if (!worker) return;
    // While we wait on the worker, it is what keeps the process alive.
    worker.ref();
    try {
      while (!this.failure && (all ? this.inFlight > 0 : this.full)) {
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      // Not once closed: terminate() refs the worker until it has exited, and an unref here
      // would let the process exit before the close() awaiting that exit resolves.
      if (!this.closed) worker.unref();
    }
    this.check();
  }

  /** Sends the batch unless it has room for `bytes` more bytes and one more operation. */
  private ensureRoom(bytes: number): void {
    if (BATCH_BYTES - this.used < bytes || this.count + OP_WORDS > this.ops.length) this.send();
  }

  private op(code: number, a: number, b: number, c: number): void {
    const ops = this.ops;
    let i = this.count;
    ops[i++] = code;
    ops[i++] = a;
    ops[i++] = b;
    ops[i++] = c;
    this.count = i;
  }

  private named(code: number, rel: string, c: number): void {
    this.ensureRoom(MAX_NAME_BYTES);
    const n = hasEscapedBytes(rel)
      ? nameToBytes(rel).copy(this.data, this.used)
      : this.data.write(rel, this.used, "utf8");
    this.op(code, this.used, n, c);
    this.used += n;
  }

  /** Whether a caller must wait for the worker before queueing more. */
  private get full(): boolean {
    return this.inFlight >= MAX_BATCHES_IN_FLIGHT || this.bulkInFlight >= MAX_BULK_BATCHES_IN_FLIGHT;
  }

  private ensureDir(rel: string): void {
    if (this.made.has(rel)) return;
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    this.named(MKDIR, rel, 0);
    this.made.add(rel);
  }

  dir(entry: { path: string; mode: number }): void | Promise<void> {
    this.check();
    this.dirModes.set(entry.path, restoredMode(entry.mode, this.umask));
    if (this.full) return this.settle().then(() => this.ensureDir(entry.path));
    this.ensureDir(entry.path);
  }

  file(entry: EntryInfo): FileSink | undefined | Promise<FileSink> {
    if (entry.path === MANIFEST_NAME || entry.path === AUDIT_KEY_ENTRY) return undefined;
    return this.open(entry.path, entry.mode, entry.mtime, false);
  }

  private open(
    rel: string,
    mode: number,
    mtime: Date | undefined,
    replace: boolean,
  ): FileSink | Promise<FileSink> {
    this.check();
    if (this.full) return this.settle().then(() => this.open(rel, mode, mtime, replace));
    const slash = rel.lastIndexOf("/");
    if (slash > 0) this.ensureDir(rel.slice(0, slash));
    // A mode the umask leaves alone: open(2) creates the file with it, no fchmod needed.
    this.named(OPEN, rel, restoredMode(mode, this.umask) | (replace ? REPLACE : 0));
    this.opened++;
    const mtimeSeconds = mtime ? mtime.getTime() / 1000 : Number.NaN;
    return {
      write: (chunk: Buffer): void | Promise<void> => this.write(chunk),
      end: (): void | Promise<void> => {
        this.check();
        if (this.fsync) this.written.push(rel);
        this.ensureRoom(0);
        this.op(CLOSE, -1, mtimeSeconds, 0);
        if (this.full) return this.settle();
      },
    };
  }

  private write(chunk: Buffer): void | Promise<void> {
    this.check();
    for (let off = 0; off < chunk.length;) {
      this.ensureRoom(1);
      if (this.full) return this.settle().then(() => this.write(chunk.subarray(off)));
      const n = Math.min(chunk.length - off, BATCH_BYTES - this.used);
      chunk.copy(this.data, this.used, off, off + n);
      this.op(WRITE, this.used, n, 0);
      this.used += n;
      off += n;
    }
  }

  /**
   * Creates those of the folders `rels` that the archive did not hold, with the mode of a folder
   * it holds without one (the ones it holds keep theirs).
   */
  async folders(rels: readonly string[]): Promise<void> {
    for (const rel of rels) {
      this.check();
      if (this.full) await this.settle();
      this.ensureDir(rel);
    }
  }

  /** Adds a file of our own (not from the archive) to the tree, replacing one of that name. */
  async writeFile(rel: string, data: string): Promise<void> {
    const sink = await this.open(rel, 0o644, undefined, true);
    await sink.write(Buffer.from(data));
    await sink.end();
  }

  /**
   * Waits for the worker to finish (or runs the one batch), applies folder modes (deepest
   * first), then makes everything durable. One syncfs(2) of the staging file system (`sync -f`)
   * writes every file and folder of the extraction in one journal commit, where 8,421 separate
   * fsyncs took seconds; when `sync -f` is not available every file and folder is fsynced one by
   * one (32 in flight).
   * The syncfs also writes out what other processes left dirty on that file system, so beside a
   * heavy writer it waits for their data too; fsyncing each file is slower still there (every
   * fsync waits for a disk flush of its own, and beside a writer that fsyncs, for its turn), so
   * the syncfs is used whatever else is dirty.
   */
  async finish(): Promise<void> {
    try {
      try {
        this.check();
        this.send(true);
        await this.settle(true);
      } finally {
        await this.stopWorker();
      }
      const dirs = [...this.made].sort((a, b) => b.length - a.length);
      for (const rel of dirs)
        chmodSync(
          rel ? fsPath(this.root, rel) : this.root,
          this.dirModes.get(rel) ?? restoredMode(0o755, this.umask),
        );
      if (!this.fsync) return;
      await this.writingOut;
      if (await this.syncFileSystem()) return;
      const pool = new FsyncPool();
      for (const rel of this.written) {
        const r = pool.add(openSync(fsPath(this.root, rel), "r"));
        if (r) await r;
      }
      await pool.drain();
      for (const rel of dirs) await fsyncDir(rel ? fsPath(this.root, rel) : this.root);
    } finally {
      this.endSyncer();
    }
  }

  /**
   * Stops the worker if it started, and the syncfs shell (idempotent). After a failed
   * extraction, call this before removing the staging folder, so that nothing is still being
   * written into it.
   */
  async close(): Promise<void> {
    this.endSyncer();
    await this.stopWorker();
  }

  private endSyncer(): void {
    void this.syncer?.then((s) => s.close());
  }

  private async stopWorker(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Whoever still waits for a batch learns that the writer is gone (and stops writing).
    this.failure ??= new Error("the staging writer was closed");
    this.wakeUp();
    await this.worker?.terminate();
  }
}
