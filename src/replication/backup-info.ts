/**
 * The last good backup, for status and metrics ("last backup age", RPO without followers), from
 * the shared record `runs/backups.jsonl` (`src/dr/backup-log.ts`).
 */
import { lastGoodBackup, type BackupLogProblem } from "../dr/backup-log.js";
import type { Workspace } from "../workspace/layout.js";

export interface BackupInfo {
  created_at: string;
  location: string;
  age_seconds: number;
  /** Read back and checked after it was written (`--verify`, a catalogue location, `dr verify`). */
  verified: boolean;
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
  };
}
