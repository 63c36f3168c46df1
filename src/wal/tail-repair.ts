/**
 * Cutting a WAL file back to a sound end, done one way by everyone: the bytes after the cut are
 * saved in a sidecar `<file>.torn-<utc>-<4 hex>` (fsynced; nothing is ever dropped unseen), then
 * the file is truncated there and fsynced. Two rules say where the sound end is:
 *  - a torn tail (`repairTornTail`, `cutTornTail`): just after the newest line that parses and
 *    whose hash verifies, found reading only the end of the file (`scanTail`). A crash's
 *    interrupted append; repaired by the writer at open, by a follower at start and by a promotion.
 *  - the first chain break (`cutAtFirstBreak`): just before the first line that does not continue
 *    the chain, found reading the whole file. A tampered or broken entry that arrived inside a base
 *    snapshot never stays in this node's WAL.
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { createInterface } from "node:readline";
import { durableAppend, durableCreate, durableTruncate } from "../workspace/durable.js";
import { type ChainTail, GENESIS_HASH, IntegrityError, verifyPrefix } from "./continuation.js";
import { listWalRunFiles } from "./run-files.js";
import { scanTail, type TailScan } from "./tail.js";

export interface WalRepair {
  run_id: string;
  file: string;
  /** Where the cut bytes were saved. */
  sidecar: string;
  /** Offset the file was cut at (its new size). */
  cut_offset: number;
  cut_bytes: number;
  reason: string;
  /** seq of the last valid entry kept (-1: none). */
  kept_last_seq: number;
}

/** Saves the bytes of `fh` from `at` to `size` in a sidecar of `file`, then cuts it at `at`. */
async function cutWalAt(fh: FileHandle, file: string, at: number, size: number): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:.]/g, "");
  const sidecar = `${file}.torn-${stamp}-${randomBytes(2).toString("hex")}`;
  const cutBytes = size - at;
  // Copy in bounded chunks: a torn tail is usually one line, but never hold an unbounded amount.
  const chunk = Buffer.allocUnsafe(Math.min(cutBytes, 1 << 20));
  let copied = 0;
  while (copied < cutBytes) {
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, cutBytes - copied), at + copied);
    if (bytesRead === 0) break;
    const piece = chunk.subarray(0, bytesRead);
    if (copied === 0) await durableCreate(sidecar, piece);
    else await durableAppend(sidecar, piece);
    copied += bytesRead;
  }
  await durableTruncate(fh, at);
  return sidecar;
}

/** Cuts the torn tail `scanTail` found in the open `file` (tail.validEnd < tail.size). */
export async function cutTornTail(
  fh: FileHandle,
  file: string,
  runId: string,
  tail: TailScan,
): Promise<WalRepair> {
  const sidecar = await cutWalAt(fh, file, tail.validEnd, tail.size);
  return {
    run_id: runId,
    file,
    sidecar,
    cut_offset: tail.validEnd,
    cut_bytes: tail.size - tail.validEnd,
    reason: tail.reason ?? "torn tail",
    kept_last_seq: tail.last ? tail.last.seq : -1,
  };
}

/** Repairs the torn tail of run `runId`'s WAL `file`; undefined when it ends sound or is missing. */
export async function repairTornTail(file: string, runId: string): Promise<WalRepair | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, "r+");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const tail = await scanTail(fh);
    return tail.validEnd < tail.size ? await cutTornTail(fh, file, runId, tail) : undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Checks the whole chain of run `runId`'s WAL `file` (streaming) and cuts it before the first bad
 * line. Returns the integrity error, or null when the chain is sound.
 */
export async function cutAtFirstBreak(file: string, runId: string): Promise<IntegrityError | null> {
  let tail: ChainTail = { seq: -1, hash: GENESIS_HASH };
  let offset = 0;
  let bad: IntegrityError | null = null;
  const input = createReadStream(file, "utf8");
  const rl = createInterface({ input, crlfDelay: Infinity });
  for await (const line of rl) {
    const r = verifyPrefix(runId, tail, [line]);
    if (r.error) {
      bad = r.error;
      break;
    }
    tail = r.tail;
    offset += Buffer.byteLength(line, "utf8") + 1;
  }
  rl.close();
  // Leaving the loop early does not close the file (readline leaves its input open).
  input.destroy();
  if (!bad) return null;
  const fh = await open(file, "r+");
  try {
    await cutWalAt(fh, file, offset, (await fh.stat()).size);
  } finally {
    await fh.close();
  }
  return bad;
}

/** Cuts every WAL in `walDir` at its first break; returns the errors found. */
export async function cutAllAtFirstBreak(walDir: string): Promise<IntegrityError[]> {
  const errors: IntegrityError[] = [];
  for (const run of await listWalRunFiles(walDir).catch(() => [])) {
    const e = await cutAtFirstBreak(run.file, run.run_id);
    if (e) errors.push(e);
  }
  return errors;
}
