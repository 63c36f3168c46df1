/**
 * The orchestrator's use of checkpoints (src/checkpoint/, owned by the recovery core): when to
 * write one, and the newest one's summary for `status`.
 */
import type { Workspace } from "../workspace/layout.js";

export interface CheckpointSummary {
  id: string;
  created_at: string;
  age_s: number;
  wal_position: unknown;
}

export async function newestCheckpointInfo(_ws: Workspace): Promise<CheckpointSummary | null> {
  return null;
}
