/**
 * `--metrics-file` for `dr backup`: the command's action runs inside a wrapper that records its
 * outcome (success with the archive's facts, or a failure) in the textfile-collector file.
 */
import type { Command } from "../../vendor/commander.js";
import { checkMetricsFile, recordBackupMetrics, type BackupOutcome } from "../../dr/backup-metrics.js";
import { Output, globalsOf } from "../output.js";

/** What a backup action reports for the metrics; nothing for a run that wrote no backup (--dry-run). */
export interface BackupFacts {
  sizeBytes: number;
  fileCount: number;
  verified: boolean;
}

/** Records one outcome; a metrics file that cannot be written is a warning, the backup stands. */
export async function updateBackupMetrics(cmd: Command, file: string, outcome: BackupOutcome): Promise<void> {
  await recordBackupMetrics(file, globalsOf(cmd).sdd, outcome).catch((err: Error) =>
    Output.of(cmd).warn(`could not update the metrics file ${file}: ${err.message}`),
  );
}

const reported = new WeakMap<Command, BackupFacts>();

/** Called by the action once its backup is written. */
export function reportBackupFacts(cmd: Command, facts: BackupFacts): void {
  reported.set(cmd, facts);
}

type ActionHandler = (args: unknown[]) => unknown;

/**
 * Wraps the action of `cmd` (which reports its BackupFacts). Commander has hooks before and after
 * an action but none for an action that throws, and a failure must be counted; so the handler
 * commander keeps is wrapped here rather than the action's body indented into a wrapper.
 */
export function recordMetricsOf(cmd: Command): void {
  const holder = cmd as unknown as { _actionHandler: ActionHandler };
  const inner = holder._actionHandler;
  holder._actionHandler = async (args) => {
    const opts = cmd.opts() as { metricsFile?: string; dryRun?: boolean };
    const file = opts.metricsFile;
    if (file === undefined || opts.dryRun) return inner(args);
    await checkMetricsFile(file);
    const started = performance.now();
    let result: unknown;
    try {
      result = await inner(args);
    } catch (err) {
      await updateBackupMetrics(cmd, file, { ok: false });
      throw err;
    }
    const facts = reported.get(cmd);
    if (facts)
      await updateBackupMetrics(cmd, file, {
        ok: true,
        durationSeconds: (performance.now() - started) / 1000,
        ...facts,
      });
    return result;
  };
}
