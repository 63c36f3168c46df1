/**
 * Pass 1 of a backup: how much of each file to copy (WAL and log cuts) and the sha256 of exactly
 * that, which yields the manifest. The manifest comes first in the archive, so every file is
 * hashed before any is archived; pack.ts reads each file again and re-hashes it.
 */
import { createHash, hash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync, type Stats } from "node:fs";
import path from "node:path";
import type { StatePosition } from "./manifest.js";
import { closeFiles, type PackFile } from "./pack.js";
import type { SnapshotHandle } from "./snapshot.js";
import { WAL_FILE, isLineLog, lineLogCut, walBreakInCut, walCut } from "./state-position.js";
import type { WalError } from "../wal/chain.js";
import { isRunClosed } from "../wal/recovery.js";
import type { ListedFile } from "./walk.js";

const READ_CHUNK = 1024 * 1024;

export interface Planned extends PackFile {
  sha256: string;
}

export interface HashPassResult {
  planned: Planned[];
  wal: StatePosition["wal"];
  /** The first break of each WAL copied with a broken chain (the manifest's `wal_breaks`). */
  walBreaks: WalError[];
}

/** Whether `rel` is a WAL or a line log, copied only up to its last complete entry or line. */
const isCutLog = (rel: string): boolean => WAL_FILE.test(rel) || isLineLog(rel);

/** How much of `f` to copy: all of it, or up to the last complete entry or line of a log. */
async function cutLength(
  f: ListedFile,
  size: number,
  positions: SnapshotHandle["positions"],
  wal: StatePosition["wal"],
  walBreaks: WalError[],
  warnings: string[],
): Promise<number> {
  // A name that is not UTF-8 (bytes, raw-name.ts) is none of the logs, which we name in ASCII.
  if (typeof f.abs !== "string") return size;
  const walMatch = WAL_FILE.exec(f.rel);
  if (walMatch) {
    const runId = walMatch[1]!;
    const ack = positions?.[runId];
    const cut = await walCut(f.abs, size, ack ? ack.seq : undefined);
    wal[runId] = cut.position;
    // A closed run has no writer left to tear its tail: bytes after its newest valid entry are
    // damage (start refuses them), copied as found and named below, not left out.
    const whole = cut.dropped > 0 && (await isRunClosed(path.dirname(f.abs), runId));
    if (cut.dropped && !whole && !positions) {
      warnings.push(`${f.rel}: left out ${cut.dropped} bytes after the last complete entry`);
    }
    const broken = await walBreakInCut(f.abs, runId, whole ? undefined : cut);
    if (broken) {
      walBreaks.push(broken);
      warnings.push(
        `wal run ${runId}: chain broken at seq ${broken.seq} (line ${broken.line}: ${broken.kind}); backed up as found: \`dr verify\` of this archive reports it, and \`start\` refuses it once restored`,
      );
    }
    return whole ? size : cut.length;
  }
  if (isLineLog(f.rel)) return (await lineLogCut(f.abs, size)).length;
  return size;
}

/** Reads (up to `length` bytes of) one open file, hashing it; the row for the manifest. */
function readAndHash(
  f: ListedFile,
  fd: number,
  st: Stats,
  length: number,
  buf: Buffer,
  onBytes: (n: number) => void,
): Planned {
  let done = 0;
  let sha256: string;
  if (length <= buf.length) {
    // The common file fits the buffer: hashed in one call (a Hash object costs more than
    // hashing a few KB).
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, done);
      if (n === 0) break; // shrank since we looked: the archive holds what was there
      done += n;
    }
    onBytes(done);
    sha256 = hash("sha256", buf.subarray(0, done));
  } else {
    const h = createHash("sha256");
    while (done < length) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, length - done), done);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      done += n;
      onBytes(n);
    }
    sha256 = h.digest("hex");
  }
  return { rel: f.rel, abs: f.abs, length: done, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, sha256 };
}

/**
 * Pass 1: cut lengths and hashes; reads each file (up to its cut) once. Size, mode and mtime are
 * the open file's (one fstat: the listing stats no file). The first `keepOpen` files stay open for
 * the packing pass (`fd`: pack.ts reads and closes them; closeFiles if it never runs); this pass
 * closes them itself when it fails. `onBytes`' total is the sum of the listed sizes when the
 * files carry them (walkWorkspace), 0 (not known) otherwise.
 */
export async function hashPass(
  files: (ListedFile & { size?: number })[],
  positions: SnapshotHandle["positions"],
  warnings: string[],
  onBytes?: (done: number, total: number) => void,
  keepOpen = 0,
): Promise<HashPassResult> {
  const total = files.reduce((sum, f) => sum + (f.size ?? 0), 0);
  let hashed = 0;
  const progress = (n: number): void => {
    hashed += n;
    onBytes?.(hashed, total);
  };
  const run: HashRun = { buf: Buffer.allocUnsafe(READ_CHUNK), planned: [], keepOpen, progress };
  const wal: StatePosition["wal"] = {};
  const walBreaks: WalError[] = [];
  try {
    let i = 0;
    while (i < files.length) {
      // Most files are copied whole: hashed without a promise (thousands of files, one tick
      // each otherwise); this loop turns once per WAL or line log, whose cut is found first.
      i = hashWhole(files, i, run);
      if (i === files.length) break;
      const f = files[i++]!;
      const fd = openFile(f);
      if (fd === undefined) continue;
      let kept = false;
      try {
        const st = fstatSync(fd);
        if (!st.isFile()) continue;
        const length = await cutLength(f, st.size, positions, wal, walBreaks, warnings);
        kept = plan(f, fd, st, length, run);
      } finally {
        if (!kept) closeSync(fd);
      }
    }
  } catch (err) {
    closeFiles(run.planned);
    throw err;
  }
  return { planned: run.planned, wal, walBreaks };
}

interface HashRun {
  buf: Buffer;
  planned: Planned[];
  /** How many more descriptors may stay open for the packing pass. */
  keepOpen: number;
  progress: (n: number) => void;
}

/** Opens `f` to hash it; undefined when it was removed since the walk. */
function openFile(f: ListedFile): number | undefined {
  try {
    return openSync(f.abs, "r");
  } catch {
    return undefined;
  }
}

/** Reads and hashes the open `f` into `run.planned`; true when its descriptor stays open. */
function plan(f: ListedFile, fd: number, st: Stats, length: number, run: HashRun): boolean {
  const p = readAndHash(f, fd, st, length, run.buf, run.progress);
  run.planned.push(p);
  if (run.keepOpen <= 0) return false;
  run.keepOpen--;
  p.fd = fd;
  return true;
}

/**
 * Plans `files` from `start` on while each is copied whole (not a WAL or a line log); returns the
 * index of the first that is one.
 */
function hashWhole(files: ListedFile[], start: number, run: HashRun): number {
  let i = start;
  for (; i < files.length; i++) {
    const f = files[i]!;
    if (isCutLog(f.rel)) break;
    const fd = openFile(f);
    if (fd === undefined) continue;
    let kept = false;
    try {
      const st = fstatSync(fd);
      // Replaced by something else since the walk: left out.
      if (st.isFile()) kept = plan(f, fd, st, st.size, run);
    } finally {
      if (!kept) closeSync(fd);
    }
  }
  return i;
}
