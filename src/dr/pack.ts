/**
 * The tar byte stream of a backup: `manifest.json` first, then the folders, then every file.
 * Headers are node-tar's (`Header`, plus a PAX record when a name does not fit ustar), so Python's
 * `tarfile` and GNU tar read the result.
 *
 * Files are read a second time here (the first read hashed them for the manifest). Each is read
 * for exactly the length the manifest records and hashed again on the way: a file that changed
 * between the two reads fails the backup with FileChangedError instead of producing an archive
 * that disagrees with its own manifest. Output is batched into 1 MiB buffers so gzip gets big
 * chunks, and memory stays flat whatever the file sizes.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { Header } from "tar/header";
import { Pax } from "tar/pax";
import { GarbageBudget } from "./memory.js";

const BLOCK = 512;
const BATCH = 1024 * 1024;

export interface PackDir {
  rel: string;
  mode: number;
  mtimeMs: number;
}
export interface PackFile {
  rel: string;
  /** Absolute path to read from, or undefined when `data` holds the bytes (manifest, audit key). */
  abs?: string;
  data?: Buffer;
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

class Batcher {
  buf = Buffer.allocUnsafe(BATCH);
  pos = 0;
  /** Returns the full batch (to be yielded) and starts a new one. */
  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(BATCH);
    this.pos = 0;
    return out;
  }
  get room(): number {
    return this.buf.length - this.pos;
  }
  zero(n: number): void {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }
}

/** The header block(s) for one entry (a PAX record first when needed). */
export function encodeHeader(h: {
  path: string;
  type: "File" | "Directory";
  size: number;
  mode: number;
  mtimeMs: number;
}): Buffer {
  const data = {
    path: h.type === "Directory" ? h.path + "/" : h.path,
    type: h.type,
    size: h.type === "File" ? h.size : 0,
    mode: h.mode,
    uid: 0,
    gid: 0,
    uname: "",
    gname: "",
    mtime: new Date(Math.floor(h.mtimeMs / 1000) * 1000),
  } as const;
  const block = Buffer.alloc(BLOCK);
  const header = new Header(data);
  if (header.encode(block, 0)) {
    const pax = new Pax({ ...data, path: data.path }).encode();
    return Buffer.concat([pax, block]);
  }
  return block;
}

const padding = (n: number): number => (BLOCK - (n % BLOCK)) % BLOCK;

/**
 * Yields the uncompressed tar stream. `files` must not include the manifest: it goes first.
 * `onBytes` is told how many bytes of files were read (progress).
 * Reading is synchronous on purpose: gzip runs in the thread pool meanwhile, and small files
 * cost one open/read/close each instead of several promise round trips.
 */
export async function* tarStream(
  manifest: Buffer,
  dirs: PackDir[],
  files: PackFile[],
  opts: { endOfArchive?: boolean; onBytes?: (n: number) => void } = {},
): AsyncGenerator<Buffer> {
  const b = new Batcher();
  const budget = new GarbageBudget();
  const take = (): Buffer => {
    budget.add(b.pos);
    return b.take();
  };
  const put = function* (bytes: Buffer): Generator<Buffer> {
    let off = 0;
    while (off < bytes.length) {
      if (b.room === 0) yield take();
      const n = Math.min(b.room, bytes.length - off);
      bytes.copy(b.buf, b.pos, off, off + n);
      b.pos += n;
      off += n;
    }
  };
  const pad = function* (n: number): Generator<Buffer> {
    let left = n;
    while (left > 0) {
      if (b.room === 0) yield take();
      const k = Math.min(b.room, left);
      b.zero(k);
      left -= k;
    }
  };

  const now = Date.now();
  yield* put(
    encodeHeader({ path: "manifest.json", type: "File", size: manifest.length, mode: 0o644, mtimeMs: now }),
  );
  yield* put(manifest);
  yield* pad(padding(manifest.length));

  for (const d of dirs) {
    yield* put(encodeHeader({ path: d.rel, type: "Directory", size: 0, mode: d.mode, mtimeMs: d.mtimeMs }));
  }

  for (const f of files) {
    yield* put(encodeHeader({ path: f.rel, type: "File", size: f.length, mode: f.mode, mtimeMs: f.mtimeMs }));
    const hash = createHash("sha256");
    if (f.data) {
      hash.update(f.data);
      yield* put(f.data);
      opts.onBytes?.(f.data.length);
    } else {
      let fd: number;
      try {
        fd = openSync(f.abs!, "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new FileChangedError(f.rel);
        throw err;
      }
      try {
        let done = 0;
        while (done < f.length) {
          if (b.room < 64 * 1024) yield take();
          const want = Math.min(b.room, f.length - done);
          const n = readSync(fd, b.buf, b.pos, want, done);
          if (n === 0) throw new FileChangedError(f.rel); // shrank since it was hashed
          hash.update(b.buf.subarray(b.pos, b.pos + n));
          b.pos += n;
          done += n;
          opts.onBytes?.(n);
        }
      } finally {
        closeSync(fd);
      }
    }
    if (f.sha256 && hash.digest("hex") !== f.sha256) throw new FileChangedError(f.rel);
    yield* pad(padding(f.length));
  }
  // End of archive: two zero blocks (unless the caller's seal member carries them).
  if (opts.endOfArchive ?? true) yield* pad(2 * BLOCK);
  if (b.pos > 0) yield take();
}
