/**
 * Writes an archive's entries under a staging folder: every file with its mode and mtime, every
 * folder with its mode, everything durable at `finish()`.
 *
 * The file-system calls run on a worker thread (staging-worker.ts) in archive order. Creating
 * 8,421 files is about as costly as decrypting, decompressing and hashing them; on the main
 * thread the two added up, on two threads they overlap. File bytes are copied into batches of
 * BATCH_BYTES whose buffers are transferred to the worker, at most MAX_BATCHES_IN_FLIGHT at a
 * time, so memory stays bounded whatever the archive's size. A failure on the worker (disk
 * full, permissions) is raised by the next `write`/`end`/`file` call or by `finish()`.
 */
import { execFile } from "node:child_process";
import { closeSync, fsync, openSync } from "node:fs";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { fsyncDir } from "../workspace/durable.js";
import { AUDIT_KEY_ENTRY, MANIFEST_NAME } from "./manifest.js";
import type { ExtractHandler, FileSink } from "./unpack.js";
import type { StagingBatch, StagingFailure, StagingOp, StagingReply } from "./staging-worker.js";

const BATCH_BYTES = 256 * 1024;
const MAX_BATCHES_IN_FLIGHT = 4;
const MAX_OPS_PER_BATCH = 4096;

/** fsyncs file descriptors a few dozen at a time (parallel fsyncs share journal commits). */
class FsyncPool {
  private inflight = 0;
  private waiters: (() => void)[] = [];
  private error?: Error;
  private idle?: () => void;
  constructor(private readonly limit = 32) {}
  add(fd: number): void | Promise<void> {
    if (this.error) {
      closeSync(fd);
      throw this.error;
    }
    this.inflight++;
    fsync(fd, (err) => {
      closeSync(fd);
      if (err && !this.error) this.error = err;
      this.inflight--;
      this.waiters.shift()?.();
      if (this.inflight === 0) this.idle?.();
    });
    if (this.inflight >= this.limit) return new Promise((r) => this.waiters.push(r));
  }
  async drain(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((r) => (this.idle = r));
    if (this.error) throw this.error;
  }
}

/** syncfs(2) of the file system holding `dir` via coreutils `sync -f`; false when unavailable. */
function syncFileSystem(dir: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile("sync", ["-f", dir], (err) => resolve(!err));
  });
}

function failureError(f: StagingFailure): NodeJS.ErrnoException {
  return Object.assign(new Error(f.message), { code: f.code, syscall: f.syscall, path: f.path });
}

export class StagingWriter implements ExtractHandler {
  private readonly dirModes = new Map<string, number>();
  private readonly made = new Set<string>([""]);
  private readonly written: string[] = [];
  private readonly fsync: boolean;
  private readonly worker: Worker;
  private ops: StagingOp[] = [];
  private readonly spare: ArrayBuffer[] = [];
  private data = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private used = 0;
  private nextId = 0;
  private inFlight = 0;
  private failure?: NodeJS.ErrnoException;
  private wake?: () => void;
  private closed = false;

  /** `fsync: false` for throw-away extractions (verify's temp folder). */
  constructor(
    readonly root: string,
    opts: { fsync?: boolean } = {},
  ) {
    this.fsync = opts.fsync ?? true;
    this.worker = new Worker(new URL("./staging-worker.js", import.meta.url), {
      workerData: { root },
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // An abandoned extraction must not keep the process alive; close() ends the thread.
    this.worker.unref();
    this.worker.on("message", (reply: StagingReply) => {
      if ("failed" in reply) this.failure ??= failureError(reply.failed);
      this.spare.push(reply.data);
      this.inFlight--;
      this.wakeUp();
    });
    this.worker.on("error", (err) => {
      this.failure ??= err;
      this.inFlight = 0;
      this.wakeUp();
    });
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private send(): void {
    if (!this.ops.length) return;

    const batch: StagingBatch = { id: this.nextId++, ops: this.ops, data: this.data.buffer as ArrayBuffer };
    this.worker.postMessage(batch, [batch.data]);
    this.inFlight++;
    this.ops = [];
    const reuse = this.spare.pop();
    this.data = reuse ? Buffer.from(reuse) : Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.used = 0;
  }

  /** Waits while too many batches are queued (or, with `all`, until none is). */
  private async settle(all = false): Promise<void> {
    // While we wait on the worker, it is what keeps the process alive.
    this.worker.ref();
    try {
      while (!this.failure && this.inFlight > (all ? 0 : MAX_BATCHES_IN_FLIGHT - 1)) {
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      this.worker.unref();
    }
    this.check();
  }

  private push(op: StagingOp): void | Promise<void> {
    this.ops.push(op);
    if (this.ops.length >= MAX_OPS_PER_BATCH) {
      this.send();
      if (this.inFlight >= MAX_BATCHES_IN_FLIGHT) return this.settle();
    }
  }

  private ensureDir(rel: string): void {
    if (this.made.has(rel)) return;
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    this.ops.push(["mkdir", rel]);
    this.made.add(rel);
  }

  dir(entry: { path: string; mode: number }): void {
    this.check();
    this.ensureDir(entry.path);
    this.dirModes.set(entry.path, entry.mode & 0o777);
  }

  file(entry: { path: string; size: number; mode: number; mtime?: Date }): FileSink | undefined {
    if (entry.path === MANIFEST_NAME || entry.path === AUDIT_KEY_ENTRY) return undefined;
    this.check();
    const rel = entry.path;
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    this.ops.push(["open", rel]);
    return {
      write: (chunk: Buffer): void | Promise<void> => this.write(chunk),
      end: (): void | Promise<void> => {
        this.check();
        if (this.fsync) this.written.push(rel);
        const mtime = entry.mtime ? entry.mtime.getTime() / 1000 : null;
        return this.push(["close", entry.mode & 0o777, mtime]);
      },
    };
  }

  private async writeRest(chunk: Buffer, from: number): Promise<void> {
    let off = from;
    while (off < chunk.length) {
      this.send();
      await this.settle();
      off += this.copyIn(chunk, off);
    }
  }

  private copyIn(chunk: Buffer, off: number): number {
    const n = Math.min(chunk.length - off, BATCH_BYTES - this.used);
    if (n === 0) return 0;
    chunk.copy(this.data, this.used, off, off + n);
    this.ops.push(["write", this.used, n]);
    this.used += n;
    return n;
  }

  private write(chunk: Buffer): void | Promise<void> {
    this.check();
    const n = this.copyIn(chunk, 0);
    if (n < chunk.length || this.used === BATCH_BYTES) return this.writeRest(chunk, n);
  }

  /**
   * Waits for the worker to finish, applies folder modes (deepest first), then makes everything
   * durable. One syncfs(2) of the staging file system (`sync -f`) writes every file and folder
   * of the extraction in one journal commit, where 8,421 separate fsyncs took seconds; when
   * `sync -f` is not available every file and folder is fsynced one by one (32 in flight).
   */
  async finish(): Promise<void> {
    try {
      this.send();
      await this.settle(true);
    } finally {
      await this.close();
    }
    const dirs = [...this.made].sort((a, b) => b.length - a.length);
    for (const rel of dirs)
      await chmod(rel ? path.join(this.root, rel) : this.root, this.dirModes.get(rel) ?? 0o755);
    if (!this.fsync) return;
    if (await syncFileSystem(this.root)) return;
    const pool = new FsyncPool();
    for (const rel of this.written) {
      const r = pool.add(openSync(path.join(this.root, rel), "r"));
      if (r) await r;
    }
    await pool.drain();
    for (const rel of dirs) await fsyncDir(rel ? path.join(this.root, rel) : this.root);
  }

  /** Stops the worker (idempotent). After a failed extraction, call this before removing the folder. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker.terminate();
  }
}
