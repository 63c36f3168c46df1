/** The archiver's status document, `runtime/archive-status.json` (written by health.ts). */
export interface ArchiveStatus {
  destination: string;
  pid: number;
  generation: string | null;
  updated_at: string;
  /** When the store last held everything that was durable (ISO), null before the first cycle. */
  caught_up_at: string | null;
  last_upload_at: string | null;
  lag_seconds: number;
  lag_entries: number;
  errors_total: number;
  errors_in_a_row: number;
  last_error: string | null;
  segments_total: number;
  bytes_total: number;
  /** The oldest restorable instant of the generation (its first snapshot), as this archiver knows it. */
  window_start_at: string | null;
  /** Decisions are held until their segment is stored (`--sync`). */
  sync: boolean;
  /** Commit groups waiting for the store now (`--sync`): non-zero with errors means decisions are blocked. */
  decisions_waiting: number;
  /** When a background compaction last completed, whether or not it found work (ISO; null: none yet). */
  last_compaction_at: string | null;
  /** Background compactions that failed since the archiver started (shipping goes on regardless). */
  compaction_errors_total: number;
  /** Background compactions failed since the last one that completed. */
  compaction_errors_in_a_row: number;
  /** The newest compaction failure, kept after a later success as `last_error` is (compare `at`). */
  last_compaction_error: { at: string; message: string } | null;
  /** When the archiver stopped (null while it runs). */
  stopped_at: string | null;
  /** Why the last write of `--metrics-file` failed (null: written, or none given). */
  metrics_error?: string | null;
}
