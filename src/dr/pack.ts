/**
 * The tar byte stream of a backup: `manifest.json` first, then the folders, then every file.
 * Headers are node-tar's format (tar-header.ts, a PAX record when a name does not fit ustar), so
 * Python's `tarfile` and GNU tar read the result.
 *
 * Files are read a second time here (hash-pass.ts hashed them for the manifest), for exactly
 * the length the manifest records, and hashed again on the way: a file that changed between
 * the two reads fails the backup with FileChangedError instead of producing an archive that
 * disagrees with its own manifest. Most files are read through the descriptor the hashing pass
 * left open (one open and one close per file, not two). Output goes to the sink in a few reused
 * 1 MiB buffers, so gzip gets big chunks and memory stays flat whatever the file sizes.
 */
import { createHash, hash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import type { Writable } from "node:stream";
import { BLOCK, nodeTarHeader, writeHeader, zeroFill, type HeaderFields } from "./tar-header.js";

const BATCH = 1024 * 1024;

export interface PackDir {
  rel: string;
  mode: number;
  mtimeMs: number;
}
export interface PackFile {
  rel: string;
  /** Absolute path to read from, or undefined when `data` holds the bytes (manifest, audit key). */
  abs?: string | Buffer;
  data?: Buffer;
  /**
   * The file opened by the hashing pass and left open for this pass, which reads it through this
   * descriptor and closes it (closeFiles closes those a failure left open).
   */
  fd?: number;
  length: number;
  mode: number;
  mtimeMs: number;
  /** Expected sha256 of the `length` bytes (from the hashing pass). */
  sha256?: string;
}

/** A file changed between the hashing pass and the packing pass. */
export class FileChangedError extends Error {
  override name = "FileChangedError";
  constructor(readonly rel: string) {
    super(`${rel} changed while it was being backed up`);
  }
}

/**
 * The batch buffers: a few fixed 1 MiB buffers, each filled, written to the sink and refilled only
 * once the sink's write callback says it has consumed it (gzip keeps no reference after that).
 * Reusing them keeps external memory flat without forced garbage collections.
 */
class BatchPool {
  buf: Buffer;
  pos = 0;
  private readonly free: Buffer[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  constructor(
    private readonly sink: Writable,
    count = 4,
  ) {
    for (let i = 0; i < count; i++) this.free.push(Buffer.allocUnsafe(BATCH));
    this.buf = this.free.pop()!;
    // A sink torn down mid-write may never call back: its close also wakes a waiting writer.
    sink.once("close", () => this.fail(new Error("the archive stream closed early")));
  }
  get room(): number {
    return this.buf.length - this.pos;
  }
  zero(n: number): void {
    zeroFill(this.buf, this.pos, this.pos + n);
    this.pos += n;
  }
  private fail(err: Error): void {
    this.failure ??= err;
    this.wakeUp();
  }
  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
  /** Writes the filled part of the current buffer and waits until a buffer is free again. */
  async send(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.pos === 0) return;
    const full = this.buf;
    this.sink.write(full.subarray(0, this.pos), (err) => {
      if (err) this.fail(err);
      this.free.push(full);
      this.wakeUp();
    });
    while (this.free.length === 0 && !this.failure) await new Promise<void>((r) => (this.wake = r));
    if (this.failure) throw this.failure;
    this.buf = this.free.pop()!;
    this.pos = 0;
  }
}

const padding = (n: number): number => (BLOCK - (n % BLOCK)) % BLOCK;

/**
 * Writes the uncompressed tar stream into `sink` (not ended here). `files` must not include the
 * manifest: it goes first. `onBytes` is told how many bytes of files were read (progress).
 * Every descriptor `files` hold is closed when this returns or throws.
 * Reading is synchronous on purpose: gzip runs in the thread pool meanwhile, and small files
 * cost one read each instead of several promise round trips.
 */
export async function writeTar(
  sink: Writable,
  manifest: Buffer,
  dirs: PackDir[],
  files: PackFile[],
  opts: { endOfArchive?: boolean; onBytes?: (n: number) => void } = {},
): Promise<void> {
  try {
    const b = new BatchPool(sink);
    const now = Date.now();
    await writeEntry(
      b,
      { path: "manifest.json", type: "File", size: manifest.length, mode: 0o644, mtimeMs: now },
      manifest,
    );
    for (const d of dirs) {
      await writeEntry(b, { path: d.rel, type: "Directory", size: 0, mode: d.mode, mtimeMs: d.mtimeMs });
    }
    let i = 0;
    while (i < files.length) {
      // The common file goes into the current batch without a promise (packFitting); this
      // loop turns only once per batch or for a file that does not fit the room left.
      i = packFitting(files, i, b, opts.onBytes);
      if (i === files.length) break;
      await packOne(files[i++]!, b, opts.onBytes);
    }
    // End of archive: two zero blocks (unless the caller's seal member carries them).
    if (opts.endOfArchive ?? true) await pad(b, 2 * BLOCK);
    await b.send();
  } finally {
    closeFiles(files);
  }
}

/** Closes the descriptors the hashing pass left open in `files` (those not packed yet). */
export function closeFiles(files: PackFile[]): void {
  for (const f of files) {
    if (f.fd === undefined) continue;
    const fd = f.fd;
    // Forgotten before it is closed: the number may be reused at once.
    f.fd = undefined;
    closeSync(fd);
  }
}

/** Copies `bytes` into the batches, sending full ones. */
async function put(b: BatchPool, bytes: Buffer): Promise<void> {
  let off = 0;
  while (off < bytes.length) {
    if (b.room === 0) await b.send();
    const n = Math.min(b.room, bytes.length - off);
    bytes.copy(b.buf, b.pos, off, off + n);
    b.pos += n;
    off += n;
  }
}

/** `n` zero bytes into the batches. */
async function pad(b: BatchPool, n: number): Promise<void> {
  let left = n;
  while (left > 0) {
    if (b.room === 0) await b.send();
    const k = Math.min(b.room, left);
    b.zero(k);
    left -= k;
  }
}

async function header(b: BatchPool, h: HeaderFields): Promise<void> {
  if (b.room < BLOCK) await b.send();
  const out = writeHeader(h, b.buf, b.pos);
  if (out !== undefined) b.pos += out;
  else await put(b, await nodeTarHeader(h));
}

/** One entry whose bytes are in memory (manifest.json, a folder: none). */
async function writeEntry(b: BatchPool, h: HeaderFields, data?: Buffer): Promise<void> {
  await header(b, h);
  if (data) {
    await put(b, data);
    await pad(b, padding(data.length));
  }
}

/**
 * Packs `files` from `start` on while each fits the current batch with its header and padding;
 * returns the index of the first one that does not (or needs the general path: bytes in memory, a
 * PAX header).
 */
function packFitting(files: PackFile[], start: number, b: BatchPool, onBytes?: (n: number) => void): number {
  let i = start;
  for (; i < files.length; i++) {
    const f = files[i]!;
    if (f.data || b.room < BLOCK + f.length + padding(f.length) || !copyInBatch(f, b, onBytes)) break;
  }
  return i;
}

/** One file by the general path: across batches as needed. */
async function packOne(f: PackFile, b: BatchPool, onBytes?: (n: number) => void): Promise<void> {
  await header(b, { path: f.rel, type: "File", size: f.length, mode: f.mode, mtimeMs: f.mtimeMs });
  if (f.data) {
    // Bytes held in memory (the audit key): what the manifest hashed, unchangeable since.
    await put(b, f.data);
    onBytes?.(f.data.length);
  } else {
    const copied = createHash("sha256");
    await copyFile(f, b, copied, onBytes);
    if (f.sha256 && copied.digest("hex") !== f.sha256) throw new FileChangedError(f.rel);
  }
  await pad(b, padding(f.length));
}

/**
 * Header, bytes and padding of `f` into the current batch, which has room for them; false, having
 * written nothing, when its header is not a single block (a PAX record: the general path).
 */
function copyInBatch(f: PackFile, b: BatchPool, onBytes?: (n: number) => void): boolean {
  const h = writeHeader(
    { path: f.rel, type: "File", size: f.length, mode: f.mode, mtimeMs: f.mtimeMs },
    b.buf,
    b.pos,
  );
  if (h === undefined) return false;
  const start = b.pos + h;
  const fd = openForCopy(f);
  try {
    let done = 0;
    while (done < f.length) {
      const n = readSync(fd, b.buf, start + done, f.length - done, done);
      if (n === 0) throw new FileChangedError(f.rel); // shrank since it was hashed
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  if (f.sha256 && hash("sha256", b.buf.subarray(start, start + f.length)) !== f.sha256) {
    throw new FileChangedError(f.rel);
  }
  b.pos = start + f.length;
  b.zero(padding(f.length));
  onBytes?.(f.length);
  return true;
}

/**
 * The descriptor to copy `f` from: the hashing pass's, now owned by the caller (which closes it),
 * or the file opened again; gone since it was hashed is a FileChangedError.
 */
function openForCopy(f: PackFile): number {
  if (f.fd !== undefined) {
    const fd = f.fd;
    f.fd = undefined;
    return fd;
  }
  try {
    return openSync(f.abs!, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new FileChangedError(f.rel);
    throw err;
  }
}

/** Reads `f.length` bytes of `f` into the batches, hashing them on the way. */
async function copyFile(f: PackFile, b: BatchPool, hash: Hash, onBytes?: (n: number) => void): Promise<void> {
  const fd = openForCopy(f);
  try {
    let done = 0;
    while (done < f.length) {
      if (b.room < 64 * 1024) await b.send();
      const want = Math.min(b.room, f.length - done);
      const n = readSync(fd, b.buf, b.pos, want, done);
      if (n === 0) throw new FileChangedError(f.rel); // shrank since it was hashed
      hash.update(b.buf.subarray(b.pos, b.pos + n));
      b.pos += n;
      done += n;
      onBytes?.(n);
    }
  } finally {
    closeSync(fd);
  }
}
