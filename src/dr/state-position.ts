/**
 * Where the state stood when a backup was taken, and how much of each append-only log to copy:
 * a WAL is copied only up to its last complete entry whose hash verifies (a torn or half-written
 * tail is left out), an audit day file or other JSONL log up to its last complete line.
 * Only the end of each file is read.
 */
import { readdirSync } from "node:fs";
import { listCheckpointFiles } from "../checkpoint/checkpoint.js";
import { Workspace } from "../workspace/layout.js";
import path from "node:path";
import { checkLine } from "../wal/entry.js";
import type { WalError } from "../wal/chain.js";
import { verifyWal } from "../wal/reader.js";
import { walRunFilesIn } from "../wal/run-files.js";
import type { StatePosition, WalPosition } from "./manifest.js";
import { findAuditTail } from "../audit/log.js";
import { readLinesBackward } from "../workspace/lines.js";

const MAX_TAIL_SCAN = 16 * 1024 * 1024;

export const WAL_FILE = /^runtime\/wal\/([^/]+)\.wal\.jsonl$/;
const LINE_LOGS = [/^audit\/[^/]+\.jsonl$/, /^runtime\/wal\/idempotency\.jsonl$/];

/** The position of a WAL line when it is a complete entry whose own hash verifies. */
export function verifiedWalEntry(line: string): WalPosition | undefined {
  const c = checkLine(line);
  return c.ok ? { seq: c.entry.seq, entry_hash: c.entry.entry_hash } : undefined;
}

export interface Cut {
  /** Bytes to copy (a prefix of the file). */
  length: number;
  position: WalPosition | null;
  /** Bytes left out at the end (a torn or unverifiable tail). */
  dropped: number;
}

/**
 * The prefix of a WAL that ends with its last complete, hash-valid entry (at most `maxSeq` when
 * a paused orchestrator told us its position), looking only at the first `size` bytes. Reads
 * backwards from the end: the cost is the tail, not the log.
 */
export async function walCut(file: string, size: number, maxSeq?: number): Promise<Cut> {
  if (size === 0) return { length: 0, position: null, dropped: 0 };
  let scanned = 0;
  for await (const line of readLinesBackward(file)) {
    if (line.end > size || !line.terminated) continue; // appended after we looked, or torn
    const pos = verifiedWalEntry(line.text);
    if (pos && (maxSeq === undefined || pos.seq <= maxSeq)) {
      return { length: line.end, position: pos, dropped: size - line.end };
    }
    scanned += line.end - line.offset;
    if (scanned > MAX_TAIL_SCAN) break;
  }
  // No verifiable entry (or none in a very long tail): not a torn tail but a file we do not
  // understand; copy it as is and let `dr verify` report it.
  return { length: size, position: null, dropped: 0 };
}

/**
 * The first break of a WAL's chain in the part a backup copies (up to its cut's entry; all of it
 * when the cut found none). A backup copies a damaged WAL as it is (in a disaster it may be the
 * best copy there is) but must say so: the restored workspace's `start` refuses it. No cut: the
 * whole file is copied (a closed run, which no writer appends to).
 */
export async function walBreakInCut(
  file: string,
  runId: string,
  cut: Cut | undefined,
): Promise<WalError | undefined> {
  // One entry per line, seq from 0: the cut's entry is on line seq + 1.
  const lastLine = cut?.position ? cut.position.seq + 1 : Infinity;
  return (await verifyWal(file, runId)).errors.find((e) => e.line <= lastLine);
}

/** Prefix of a line-oriented log up to its last '\n' (a half-written last line is left out). */
export async function lineLogCut(file: string, size: number): Promise<Cut> {
  if (size === 0) return { length: 0, position: null, dropped: 0 };
  for await (const line of readLinesBackward(file)) {
    if (line.end > size || !line.terminated) continue;
    return { length: line.end, position: null, dropped: size - line.end };
  }
  return { length: size, position: null, dropped: 0 };
}

export function isLineLog(rel: string): boolean {
  return LINE_LOGS.some((re) => re.test(rel));
}

/** The audit chain's last hmac and the file that holds it (null for an empty log). */
export async function auditPosition(root: string): Promise<StatePosition["audit"]> {
  const tail = await findAuditTail(path.join(root, "audit"));
  return tail.file
    ? { file: path.relative(root, tail.file).split(path.sep).join("/"), last_hmac: tail.hmac }
    : null;
}

/**
 * The newest checkpoint (src/checkpoint's order: our ids by time, newest first) among those
 * `archived` accepts: a checkpoint written after the backup listed its files is not in the
 * archive, so the manifest must not name it.
 */
export async function checkpointPosition(
  root: string,
  archived: (rel: string) => boolean = () => true,
): Promise<StatePosition["checkpoint"]> {
  for (const c of await listCheckpointFiles(new Workspace(root))) {
    const rel = path.relative(root, c.file).split(path.sep).join("/");
    if (archived(rel)) return { id: c.id, file: rel };
  }
  return null;
}

/** Lists the WAL run ids in a workspace (for snapshot positions). */
export function listWalRuns(root: string): string[] {
  try {
    const walDir = new Workspace(root).walDir;
    return walRunFilesIn(walDir, readdirSync(walDir))
      .map((r) => r.run_id)
      .sort();
  } catch {
    return [];
  }
}
