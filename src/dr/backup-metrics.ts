/**
 * Backup health for Prometheus without replication: a node_exporter textfile-collector file
 * (`--metrics-file`) that every `dr backup` and every `dr schedule` run rewrites atomically (its
 * own `bernstein_backup_*` lines; the WAL archiver's share the file, metrics-textfile.ts).
 * Failures are counted across runs, so the previous file is read first; a failed run keeps the
 * facts of the last success (alert on its age and on the counter's increase).
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { familyLines, rewriteFamily, workspaceLabels } from "./metrics-textfile.js";

const METRICS = {
  last_success_timestamp_seconds: ["gauge", "Unix time of the last successful backup."],
  last_duration_seconds: ["gauge", "How long the last successful backup took."],
  last_size_bytes: ["gauge", "Size of the last successful backup archive."],
  last_file_count: ["gauge", "Files in the last successful backup."],
  last_verified: ["gauge", "1 if the last successful backup was read back and checked."],
  last_run_timestamp_seconds: ["gauge", "Unix time the last backup run ended, success or not."],
  last_run_success: ["gauge", "1 if the last backup run succeeded, 0 if it failed."],
  failures_total: ["counter", "Backup runs that failed."],
  last_prune_success: ["gauge", "1 if the prune after the last successful backup succeeded, 0 if it failed."],
  prune_failures_total: ["counter", "Prunes after a successful backup that failed (the backup stands)."],
} as const;

type MetricName = keyof typeof METRICS;
const PREFIX = "bernstein_backup_";

export type BackupOutcome =
  | {
      ok: true;
      durationSeconds: number;
      sizeBytes: number;
      fileCount: number;
      verified: boolean;
      /** Whether the prune after the backup succeeded; absent when no prune ran. */
      pruned?: boolean;
    }
  | { ok: false };

/** Checked before a backup starts: a file that could never be written is a usage error now, not a lost metric later. */
export async function checkMetricsFile(file: string, flag = "--metrics-file"): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new UserError(`${flag} ${file}: folder ${dir} does not exist`, ExitCode.IO);
  if (!file.endsWith(".prom"))
    throw new UserError(
      `${flag} ${file}: node_exporter's textfile collector reads only files ending in .prom`,
      ExitCode.USAGE,
    );
}

/** The values of our metrics in a previous file (absent or unreadable: none). */
async function previousValues(file: string): Promise<Partial<Record<MetricName, number>>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return {};
  }
  const values: Partial<Record<MetricName, number>> = {};
  for (const line of text.split("\n")) {
    const m = /^bernstein_backup_([a-z_]+)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && Object.hasOwn(METRICS, m[1]!) && Number.isFinite(Number(m[2])))
      values[m[1] as MetricName] = Number(m[2]);
  }
  return values;
}

/** Rewrites the metrics file for one backup run of the workspace `sdd`. */
export async function recordBackupMetrics(
  file: string,
  sdd: string,
  outcome: BackupOutcome,
  now: Date = new Date(),
): Promise<void> {
  const prev = await previousValues(file);
  const values: Partial<Record<MetricName, number>> = { ...prev };
  const nowSeconds = Math.floor(now.getTime() / 1000);
  values.last_run_timestamp_seconds = nowSeconds;
  values.last_run_success = outcome.ok ? 1 : 0;
  values.failures_total = (prev.failures_total ?? 0) + (outcome.ok ? 0 : 1);
  if (outcome.ok) {
    values.last_success_timestamp_seconds = nowSeconds;
    values.last_duration_seconds = Math.round(outcome.durationSeconds * 1000) / 1000;
    values.last_size_bytes = outcome.sizeBytes;
    values.last_file_count = outcome.fileCount;
    values.last_verified = outcome.verified ? 1 : 0;
    if (outcome.pruned !== undefined) {
      values.last_prune_success = outcome.pruned ? 1 : 0;
      values.prune_failures_total = (prev.prune_failures_total ?? 0) + (outcome.pruned ? 0 : 1);
    }
  }
  await rewriteFamily(file, PREFIX, familyLines(PREFIX, METRICS, values, workspaceLabels(sdd)));
}
