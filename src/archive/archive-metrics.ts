/**
 * The archiver's health as `bernstein_archive_*` metrics in a node_exporter textfile-collector
 * file (the same `--metrics-file` `dr backup` writes to may be given: each keeps the other's lines).
 * Alert on `lag_seconds` (how long the store has been behind), `errors_in_a_row`, the age of
 * `last_upload_timestamp_seconds` against the decision rate, and `compaction_errors_in_a_row`
 * (objects pile up in the store while compaction fails, though nothing is lost).
 */
import {
  familyLines,
  labelValue,
  rewriteFamily,
  workspaceLabels,
  type MetricSpec,
} from "../dr/metrics-textfile.js";
import type { ArchiveStatus } from "./archive-status.js";

const PREFIX = "bernstein_archive_";

const METRICS = {
  up: ["gauge", "1 while the archiver runs, 0 once it stopped."],
  lag_seconds: ["gauge", "Seconds since the store last held everything durable locally (0 when caught up)."],
  lag_entries: ["gauge", "WAL entries durable locally and not yet in the store."],
  lag_bytes: ["gauge", "Durable WAL bytes held back (a torn tail or damage; see held_back)."],
  stalled: ["gauge", "1 while a WAL run's durable bytes are held back (torn tail or damage), else 0."],
  damaged: [
    "gauge",
    "WAL runs with damage: held-back bytes that are damage (a bad line before valid ones, or a closed run), or a break the generation's base snapshot holds as found.",
  ],
  last_upload_timestamp_seconds: ["gauge", "Unix time of the last segment stored."],
  caught_up_timestamp_seconds: ["gauge", "Unix time the store last held everything durable locally."],
  window_start_timestamp_seconds: [
    "gauge",
    "Oldest restorable instant of the generation (its first snapshot).",
  ],
  window_end_timestamp_seconds: [
    "gauge",
    "Newest restorable instant: the window's end dr list shows (the newest WAL segment's capture, or snapshot).",
  ],
  errors_total: ["counter", "Cycles that failed (store errors) since the archiver started."],
  errors_in_a_row: ["gauge", "Cycles failed since the last one that succeeded."],
  continuity_losses_total: [
    "counter",
    "Times a workspace file stopped holding what the store holds (each starts a new generation) since the archiver started.",
  ],
  segments_total: ["counter", "Segments stored since the archiver started."],
  bytes_total: ["counter", "Segment bytes stored since the archiver started."],
  decisions_waiting: ["gauge", "Commit groups held until their segment is stored (--sync)."],
  last_compaction_timestamp_seconds: ["gauge", "Unix time the last background compaction completed."],
  compaction_errors_total: ["counter", "Background compactions that failed since the archiver started."],
  compaction_errors_in_a_row: ["gauge", "Background compactions failed since the last one that completed."],
  last_compaction_error_timestamp_seconds: [
    "gauge",
    "Unix time of the last background compaction that failed.",
  ],
} as const satisfies Record<string, MetricSpec>;

const seconds = (iso: string | null): number | undefined =>
  iso === null ? undefined : Math.floor(Date.parse(iso) / 1000);

/**
 * A window's bound to the millisecond, as `dr list` shows it: `--at @<value>` restores it, where
 * whole seconds would fall outside a window shorter than a second.
 */
const instant = (iso: string | null): number | undefined =>
  iso === null ? undefined : Date.parse(iso) / 1000;

export async function writeArchiveMetrics(file: string, root: string, s: ArchiveStatus): Promise<void> {
  const values: Partial<Record<keyof typeof METRICS, number>> = {
    up: s.stopped_at ? 0 : 1,
    lag_seconds: Math.round(s.lag_seconds * 1000) / 1000,
    lag_entries: s.lag_entries,
    lag_bytes: s.lag_bytes ?? 0,
    stalled: s.held_back?.length ? 1 : 0,
    damaged: new Set([
      ...(s.held_back ?? []).filter((h) => h.damage).map((h) => h.run),
      ...(s.wal_breaks ?? []).map((b) => b.run_id),
    ]).size,
    last_upload_timestamp_seconds: seconds(s.last_upload_at),
    caught_up_timestamp_seconds: seconds(s.caught_up_at),
    window_start_timestamp_seconds: instant(s.window_start_at),
    window_end_timestamp_seconds: s.window_start_at ? instant(s.window_end_at ?? null) : undefined,
    errors_total: s.errors_total,
    errors_in_a_row: s.errors_in_a_row,
    continuity_losses_total: s.continuity_losses_total ?? 0,
    segments_total: s.segments_total,
    bytes_total: s.bytes_total,
    decisions_waiting: s.decisions_waiting,
    last_compaction_timestamp_seconds: seconds(s.last_compaction_at),
    compaction_errors_total: s.compaction_errors_total,
    compaction_errors_in_a_row: s.compaction_errors_in_a_row,
    last_compaction_error_timestamp_seconds: seconds(s.last_compaction_error?.at ?? null),
  };
  const labels = workspaceLabels(root);
  await rewriteFamily(file, PREFIX, [
    ...familyLines(PREFIX, METRICS, values, labels),
    ...heldBackLines(s, labels),
  ]);
}

/** One `held_back` sample per held-back run, its message in a label (what an alert shows). */
function heldBackLines(s: ArchiveStatus, labels: string): string[] {
  if (!s.held_back?.length) return [];
  const name = `${PREFIX}held_back`;
  return [
    `# HELP ${name} Durable WAL bytes held back per run, with the archiver's reason.`,
    `# TYPE ${name} gauge`,
    ...s.held_back.map(
      (h) =>
        `${name}${labels.slice(0, -1)},run="${labelValue(h.run)}",after_seq="${h.after_seq}",` +
        `kind="${h.damage ? "damage" : "torn_tail"}",reason="${labelValue(h.message)}"} ${h.bytes}`,
    ),
  ];
}
