import type { WalError } from "../wal/chain.js";
import type { ProcessHome } from "../workspace/process.js";

/**
 * Durable bytes of a WAL run the archiver holds back (never ships): the torn tail of an open run
 * (not yet valid; the writer's next start cuts it to a sidecar, docs/wal.md), or damage (a bad
 * line with valid entries after it, or at the end of a closed run), which no start repairs.
 */
export interface HeldBackBytes {
  stream: string;
  run: string;
  /** The last entry shipped before it, and the byte offset where the held bytes start. */
  after_seq: number;
  offset: number;
  bytes: number;
  /** Complete lines among them (a line without its newline is not counted). */
  lines: number;
  damage: boolean;
}

/** A WAL break a base snapshot holds as found (its index's `wal_breaks`), and which snapshot. */
export interface SnapshotWalBreak extends WalError {
  snapshot: number;
}

/** A WAL break a base snapshot holds, in the words of every place that names one. */
export const describeSnapshotBreak = (b: WalError): string =>
  `${b.run_id} seq ${b.seq} (line ${b.line}: ${b.kind}) was broken in the workspace`;

/** Held-back bytes as the status shows them. */
export interface HeldBackStatus extends HeldBackBytes {
  /** When a cycle first found these bytes durable and held them back (ISO). */
  since: string;
  /** One line saying what is held back and why. */
  message: string;
}

/**
 * The archiver's status document, `runtime/archive-status.json` (written by health.ts); `host`
 * and `sdd` (ProcessHome) say where the archiver that wrote it runs (absent in older ones).
 */
export interface ArchiveStatus extends ProcessHome {
  destination: string;
  pid: number;
  generation: string | null;
  updated_at: string;
  /** When the store last held everything that was durable (ISO), null before the first cycle. */
  caught_up_at: string | null;
  last_upload_at: string | null;
  /** "failing": the store refuses (errors_in_a_row); "stalled": a WAL run's bytes are held back. */
  state: "ok" | "failing" | "stalled";
  lag_seconds: number;
  lag_entries: number;
  /** Durable WAL bytes held back (the sum over `held_back`). */
  lag_bytes: number;
  held_back: HeldBackStatus[];
  /**
   * The WAL breaks the generation's newest base snapshot holds as found (empty when intact):
   * named while the generation lasts. Absent in status files of archivers before it was kept.
   */
  wal_breaks?: SnapshotWalBreak[];
  errors_total: number;
  errors_in_a_row: number;
  last_error: string | null;
  segments_total: number;
  bytes_total: number;
  /** The oldest restorable instant of the generation (its first snapshot), as this archiver knows it. */
  window_start_at: string | null;
  /**
   * The newest restorable instant (window.ts windowEnd: what `dr list` shows as the window's end),
   * as this archiver knows it. Absent in status files of archivers before it was kept.
   */
  window_end_at?: string | null;
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
  /**
   * Times a workspace file stopped holding what the store holds while this archiver ran (a file
   * rewritten, truncated, replaced or removed): each starts a new generation, and none is a store
   * error.
   * Absent in status files of archivers before they were told apart.
   */
  continuity_losses_total?: number;
  /** The newest of them: when, and which file held what. */
  last_continuity_loss?: { at: string; message: string } | null;
  /** When the archiver stopped (null while it runs). */
  stopped_at: string | null;
  /**
   * Per WAL run, the newest seq the store held when this status was written, and the bytes of the
   * run's file it held (where a cycle measured them): what a stopped archiver's lag is measured
   * against later (archiveHealth). Absent in status files of archivers before they were kept.
   */
  wal_shipped_seq?: Record<string, number>;
  wal_shipped_bytes?: Record<string, number>;
  /** Why the last write of `--metrics-file` failed (null: written, or none given). */
  metrics_error?: string | null;
}
