/**
 * Writes an archive's entries under a staging folder: every file with its mode and mtime, every
 * folder with its mode, everything durable at `finish()`.
 *
 * The calls are blocking, in archive order, on the main thread, as tar does them. A worker
 * thread doing them (and the files' sha256) in parallel with decryption and gunzip was tried
 * twice: the seed-sized restore went from 2.5x to 2.1x `tar -xzf`, but its isolate and the
 * extra malloc arenas took a 2 GB-file restore to 105 MB of peak RSS, over the 100 MB bound.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fsync,
  fstatSync,
  futimesSync,
  mkdirSync,
  openSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { fsyncDir } from "../workspace/durable.js";
import { AUDIT_KEY_ENTRY, MANIFEST_NAME } from "./manifest.js";
import type { ExtractHandler, FileSink } from "./unpack.js";

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

/**
 * The process's umask, from a probe file created in `dir` before anything else is (reading it
 * with process.umask() is deprecated: that sets and resets the mask).
 */
function umaskOf(dir: string): number {
  const probe = path.join(dir, `.umask-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fd = openSync(probe, "wx", 0o777);
  try {
    return 0o777 & ~fstatSync(fd).mode;
  } finally {
    closeSync(fd);
    unlinkSync(probe);
  }
}

export class StagingWriter implements ExtractHandler {
  private readonly dirModes = new Map<string, number>();
  private readonly made = new Set<string>([""]);
  private readonly written: string[] = [];
  private readonly fsync: boolean;
  /**
   * The bits the process's umask clears. A file whose mode survives them is created with it,
   * which spares an fchmod per file.
   */
  private readonly umask: number;

  /** `root` must exist; `fsync: false` for throw-away extractions (verify's temp folder). */
  constructor(
    readonly root: string,
    opts: { fsync?: boolean } = {},
  ) {
    this.fsync = opts.fsync ?? true;
    this.umask = umaskOf(root);
  }

  private ensureDir(rel: string): void {
    if (this.made.has(rel)) return;
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    mkdirSync(path.join(this.root, rel), { mode: 0o700 });
    this.made.add(rel);
  }

  dir(entry: { path: string; mode: number }): void {
    this.ensureDir(entry.path);
    this.dirModes.set(entry.path, entry.mode & 0o777);
  }

  file(entry: { path: string; size: number; mode: number; mtime?: Date }): FileSink | undefined {
    if (entry.path === MANIFEST_NAME || entry.path === AUDIT_KEY_ENTRY) return undefined;
    const rel = entry.path;
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    const mode = entry.mode & 0o777;
    // The staging folder is private (0700) until the swap, so no mode is too open meanwhile.
    const exact = (mode & this.umask) === 0;
    const fd = openSync(path.join(this.root, rel), "wx", exact ? mode : 0o600);
    return {
      write(chunk: Buffer): void {
        for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off, chunk.length - off);
      },
      end: (): void => {
        if (!exact) fchmodSync(fd, mode);
        if (entry.mtime) futimesSync(fd, entry.mtime, entry.mtime);
        closeSync(fd);
        if (this.fsync) this.written.push(rel);
      },
    };
  }

  /** Adds a file of our own (not from the archive) to the tree, replacing one of that name. */
  writeFile(rel: string, data: string): void {
    this.ensureDir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    writeFileSync(path.join(this.root, rel), data, { mode: 0o644 });
    if (this.fsync) this.written.push(rel);
  }

  /**
   * Applies folder modes (deepest first), then makes everything durable. One syncfs(2) of the
   * staging file system (`sync -f`) writes every file and folder of the extraction in one
   * journal commit, where 8,421 separate fsyncs took seconds; when `sync -f` is not available
   * every file and folder is fsynced one by one (32 in flight).
   */
  async finish(): Promise<void> {
    const dirs = [...this.made].sort((a, b) => b.length - a.length);
    for (const rel of dirs)
      chmodSync(rel ? path.join(this.root, rel) : this.root, this.dirModes.get(rel) ?? 0o755);
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
}
