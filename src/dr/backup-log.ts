/**
 * `runs/backups.jsonl`: one row per successful backup, appended durably by `dr backup` (and by
 * any other writer of backups: S3 uploads, replication base snapshots), and by `dr restore` in
 * the restored workspace for the backup it was restored from (src/dr/restore.ts). Read by
 * `dr list`, `dr status` and the replication status.
 */
import path from "node:path";
import { durableAppendLines, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";
import { shown } from "../workspace/shown-path.js";
import type { WalPosition } from "./manifest.js";

export interface BackupLogRow {
  created_at: string;
  location: string;
  /**
   * The whole archive's sha256; null on the row of a header-only `dr rekey` of an `.age` archive
   * (the age_* fields below state its bytes: the payload was not read again).
   */
  sha256: string | null;
  manifest_sha256: string;
  file_count: number;
  size_bytes: number;
  encrypted: boolean;
  verified: boolean;
  /**
   * The archive's WAL position per run (the manifest's `state.wal`): the WAL had durably reached
   * it, so a WAL that later ends before it was rolled back (src/dr/rollback.ts). Absent in rows
   * of older versions and of the Python original.
   */
  wal_positions?: Record<string, WalPosition | null>;
  /** An `.age` archive's recipients (public keys), so a rekey can remove one; absent otherwise. */
  recipients?: string[];
  /** Their fingerprints (`SHA256:` + 16 hex digits of the recipient's sha256), for `dr list`. */
  recipient_fingerprints?: string[];
  /**
   * Set on the row a passing `dr verify` appends (a copy of the archive's newest row, now
   * verified): when it passed. The record is append-only, so the newer row is what readers take.
   */
  verified_at?: string;
  /** Set on the row a `dr rekey` appends: the sha256 the archive had before (null: unknown). */
  rekeyed_from?: string | null;
  /** `.age` archives: bytes in the header, and the sha256 of the header and of the rest. */
  age_header_bytes?: number;
  age_header_sha256?: string;
  age_payload_sha256?: string;
}

export const backupLogPath = (ws: Workspace): string => path.join(ws.runsDir, "backups.jsonl");

export async function appendBackupLog(ws: Workspace, row: BackupLogRow): Promise<void> {
  const file = backupLogPath(ws);
  await durableMkdir(path.dirname(file));
  await durableAppendLines(file, JSON.stringify(row) + "\n");
}

/** A line of the record that is not a row: skipped, and named so nobody takes it for no backup. */
export interface BackupLogProblem {
  file: string;
  /** 1-based. */
  line: number;
  message: string;
}

/**
 * The warning naming a skipped line, in the words of every command that reports one;
 * `consequence` says what skipping it meant for this command.
 */
export function describeBackupLogProblem(
  p: BackupLogProblem,
  consequence = "the backup it recorded is not counted",
): string {
  return `${shown(p.file)} line ${p.line}: ${p.message}; ${consequence}`;
}

/**
 * Streams the rows. A line that is not a row (a crash's torn append, damage) is skipped, not
 * fatal, and pushed onto `problems` when given.
 */
export async function* readBackupLog(
  ws: Workspace,
  problems?: BackupLogProblem[],
): AsyncGenerator<BackupLogRow> {
  const file = backupLogPath(ws);
  try {
    for await (const line of readLinesForward(file)) {
      if (!line.text.trim()) continue;
      let row: unknown;
      try {
        row = JSON.parse(line.text);
      } catch {
        row = undefined;
      }
      if (typeof row === "object" && row !== null && !Array.isArray(row)) {
        yield row as BackupLogRow;
        continue;
      }
      problems?.push({
        file,
        line: line.lineNo,
        message: line.terminated
          ? "not a backup row (unparsable: a torn append or damage)"
          : `torn last line: ${Buffer.byteLength(line.text)} bytes without a newline (an interrupted append)`,
      });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
}

/**
 * After a passing `dr verify` of the archive at `location` with this whole `sha256`: when the
 * newest row of that location describes those bytes and is not verified yet, appends it again
 * as verified. Returns whether it did (a row of other bytes, a replaced archive, stays as it is).
 */
export async function markBackupVerified(
  ws: Workspace,
  location: string,
  sha256: string,
  now = new Date(),
): Promise<boolean> {
  let newest: BackupLogRow | undefined;
  for await (const row of readBackupLog(ws)) {
    if (row.location === location && (!newest || row.created_at >= newest.created_at)) newest = row;
  }
  if (!newest || newest.sha256 !== sha256 || newest.verified === true) return false;
  await appendBackupLog(ws, { ...newest, verified: true, verified_at: now.toISOString() });
  return true;
}

/** The newest row (by created_at), optionally only verified ones. */
export async function lastGoodBackup(
  ws: Workspace,
  opts: { verifiedOnly?: boolean; problems?: BackupLogProblem[] } = {},
): Promise<BackupLogRow | undefined> {
  let best: BackupLogRow | undefined;
  for await (const row of readBackupLog(ws, opts.problems)) {
    if (opts.verifiedOnly && !row.verified) continue;
    if (!best || row.created_at >= best.created_at) best = row;
  }
  return best;
}
