/**
 * The last good backup, for status and metrics ("last backup age", RPO without followers), from
 * the shared record `runs/backups.jsonl` (`src/dr/backup-log.ts`).
 */
import { lastGoodBackup, type BackupLogProblem } from "../dr/backup-log.js";
import type { WalPosition } from "../dr/manifest.js";
import type { Workspace } from "../workspace/layout.js";

export interface BackupInfo {
  created_at: string;
  location: string;
  age_seconds: number;
  /** Read back and checked after it was written (`--verify`, a catalogue location, `dr verify`). */
  verified: boolean;
  /** The archive's WAL position per run (its row's `wal_positions`); absent in older rows. */
  wal_positions?: Record<string, WalPosition | null>;
}

/**
 * WAL entries written after the backup: per run, those past the position it holds (all of a run
 * it does not hold). Null when unknown: a row without positions, or a WAL that ends before one
 * (rolled back; the rollback check names it).
 */
export function entriesAfterBackup(
  backup: BackupInfo,
  runs: ReadonlyArray<{ run_id: string; last_seq: number }>,
): number | null {
  const held = backup.wal_positions;
  if (!held) return null;
  let entries = 0;
  for (const run of runs) {
    const after = run.last_seq - (held[run.run_id]?.seq ?? -1);
    if (after < 0) return null;
    entries += after;
  }
  return entries;
}

/** `problems`: where given, the lines of the record that are not rows (see readBackupLog). */
export async function lastBackupInfo(
  ws: Workspace,
  now = Date.now(),
  problems?: BackupLogProblem[],
): Promise<BackupInfo | null> {
  const row = await lastGoodBackup(ws, { problems });
  if (!row) return null;
  const created = Date.parse(row.created_at);
  if (Number.isNaN(created)) return null;
  return {
    created_at: new Date(created).toISOString(),
    location: row.location,
    age_seconds: Math.max(0, (now - created) / 1000),
    verified: row.verified === true,
    ...(row.wal_positions ? { wal_positions: row.wal_positions } : {}),
  };
}
