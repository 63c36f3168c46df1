/**
 * `bernstein dr schedule`: the backup `dr backup --to-dir` takes (dr/backup-job.ts), run every
 * interval, each success followed by a prune; one log line per run. Or, with --print-*, the
 * systemd units or crontab line that run it.
 */
import { repositoryHead } from "../../../orchestrator/git/repo.js";
import type { Command } from "../../../vendor/commander.js";
import os from "node:os";
import path from "node:path";
import { resolveAuditKeyPath } from "../../../audit/key.js";
import { runBackupJob, type BackupJobResult } from "../../../dr/backup-job.js";
import { checkMetricsFile } from "../../../dr/backup-metrics.js";
import { encryptionOf } from "../../../dr/backup.js";
import { PASSWORD_ENV, type PasswordFlags } from "../../password.js";
import { loadedConfigOf } from "../../../config/apply.js";
import { addRecipientOptions, resolveWriteKeys, type RecipientFlags } from "../../age-keys.js";
import { absoluteLocation, parseCatalogueLocation } from "../../../storage/location.js";
import { openCatalogue } from "../../../storage/open-store.js";
import type { BackupStore } from "../../../storage/store.js";
import { makeCatalogueFolder } from "../../../storage/offsite.js";
import { PruneFailedError, pruneLocation, type NotIntact } from "../../../storage/prune.js";
import { auditPruned, warnNotIntact } from "./prune.js";
import type { RetentionPolicy } from "../../../storage/retention.js";
import {
  SYSTEMD_UNIT_NAME,
  cronLine,
  formatDuration,
  parseDuration,
  runLoop,
  systemdUnits,
} from "../../../storage/schedule.js";
import { openWorkspace, type Workspace } from "../../../workspace/layout.js";
import { onFirstInterrupt } from "../../../workspace/interrupt.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { intOption } from "../../number-option.js";
import { Output, globalsOf } from "../../output.js";
import { updateBackupMetrics } from "../dr-metrics.js";
import {
  addKeepOptions,
  addRemoteOptions,
  hasKeepFlags,
  policyFrom,
  s3OptionsFrom,
  checkKeepRules,
  type KeepFlags,
  type RemoteFlags,
} from "./options.js";

function backupJson(run: BackupJobResult) {
  const r = run.offsite!;
  return {
    ok: true,
    location: r.location,
    root: r.root,
    name: r.name,
    remote: r.remote,
    size_bytes: r.produced.size_bytes,
    file_count: r.produced.file_count,
    sha256: r.produced.sha256,
    manifest_sha256: r.produced.manifest_sha256,
    encrypted: r.produced.encrypted,
    verified: run.verified,
    retries: r.retries,
    local_copy: r.local_copy,
    removed_local_copies: r.removed_local_copies.map((c) => c.path),
    created_at: r.created_at,
    warnings: run.warnings,
  };
}

/** Options whose value is a path: a unit or crontab names it absolute, whatever its working folder. */
const PATH_OPTIONS = new Set([
  "--to-dir",
  "--password-file",
  "--metrics-file",
  "--local-copy",
  "--recipients-file",
]);

/** `dr schedule` arguments to repeat in a unit or crontab: everything after `schedule` but --print-*. */
function scheduleArgsFromArgv(argv: string[]): string[] {
  const i = argv.indexOf("schedule");
  const rest = i < 0 ? [] : argv.slice(i + 1);
  const args: string[] = [];
  for (let k = 0; k < rest.length; k++) {
    const a = rest[k]!;
    const eq = a.indexOf("=");
    // Printer-only flags; --config is put before the command by the printer.
    if (a === "--run-as" || a === "--config") k++;
    else if (PATH_OPTIONS.has(a) && k + 1 < rest.length) args.push(a, absoluteLocation(rest[++k]!));
    else if (eq > 0 && PATH_OPTIONS.has(a.slice(0, eq)))
      args.push(`${a.slice(0, eq)}=${absoluteLocation(a.slice(eq + 1))}`);
    else if (
      !["--print-systemd", "--print-cron", "--json", "--once"].includes(a) &&
      !/^--(run-as|config)=/.test(a)
    )
      args.push(a);
  }
  return args;
}

export function registerSchedule(dr: Command): void {
  const cmd = addRemoteOptions(
    addKeepOptions(
      dr
        .command("schedule")
        .description(
          "take a backup every DURATION (foreground, for systemd/cron), prune after each success, one log line per run",
        )
        .requiredOption("--every <duration>", "interval: 90s, 15m, 1h, 1h30m, 1d")
        .requiredOption("--to-dir <location>", "catalogue location: folder or s3://bucket/prefix/")
        .option(
          "--encrypt",
          "encrypt each backup with a password (needs --password-file or BERNSTEIN_DR_PASSWORD)",
        )
        .option("--plain", "plain backups even where the configuration file turns encryption on")
        .option("--metrics-file <file>", "Prometheus textfile-collector file to update after each run")
        .option("--password <pw>", "passphrase (prefer --password-file or $BERNSTEIN_DR_PASSWORD)")
        .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)")
        .option("--local-copy <dir>", "where the local copy of a remote backup is written before upload")
        .option("--full-read-back", "after each upload, download every byte again and compare its sha256")
        .option("--once", "one backup + prune, then exit (what cron runs); not with --count")
        .option("--count <n>", "stop after N runs (not with --once)", intOption("--count", 1))
        .option(
          "--print-systemd",
          "print a systemd oneshot service and its .timer for this schedule and exit",
        )
        .option("--run-as <user>", "with --print-systemd: the service's User= (default: the current user)")
        .option("--print-cron", "print a crontab line for this schedule and exit"),
    ),
  );
  addRecipientOptions(cmd).action(schedule);
}

type ScheduleFlags = RemoteFlags &
  KeepFlags &
  PasswordFlags &
  RecipientFlags & {
    every: string;
    toDir: string;
    encrypt?: boolean;
    plain?: boolean;
    iKnowItIsPlain?: boolean;
    localCopy?: string;
    fullReadBack?: boolean;
    once?: boolean;
    count?: number;
    metricsFile?: string;
    runAs?: string;
    printSystemd?: boolean;
    printCron?: boolean;
  };

async function schedule(opts: ScheduleFlags, cmd: Command): Promise<void> {
  const g = globalsOf(cmd);
  const out = Output.of(cmd);
  if (opts.once && opts.count !== undefined)
    throw new UserError(
      "dr schedule: --once is one run and --count N is N runs: give one of them",
      ExitCode.USAGE,
    );
  const everyMs = parseDuration(opts.every);
  parseCatalogueLocation(opts.toDir);
  const policy = hasKeepFlags(opts) ? policyFrom(opts) : undefined;
  if (policy) checkKeepRules(policy);
  if (opts.printSystemd || opts.printCron) return printUnits(opts, cmd, everyMs);
  // The same keys as `dr backup`: recipients (flags or the configuration) before a password,
  // encrypted by default once the configuration names either, --plain to s3:// only on purpose.
  const keys = await resolveWriteKeys(opts, opts.toDir);
  for (const w of keys.warnings) out.warn(w);
  if (opts.metricsFile !== undefined) await checkMetricsFile(opts.metricsFile);
  const ws = await openWorkspace(g.sdd);
  // Refused before the schedule says it started: every run would fail the same way.
  await makeCatalogueFolder(opts.toDir);
  const auditKeyPath = encryptionOf(keys) !== undefined ? resolveAuditKeyPath().path : undefined;
  const ac = new AbortController();
  const stopListening = onFirstInterrupt(() => ac.abort());
  const emit = (line: string | Record<string, unknown>) => {
    if (g.quiet) return;
    process.stdout.write((typeof line === "string" ? line : JSON.stringify(line)) + "\n");
  };
  if (!g.json) {
    emit(
      `${new Date().toISOString()} schedule: every ${formatDuration(everyMs)} to ${opts.toDir}` +
        (policy ? `, prune ${JSON.stringify(policy)}` : ", no prune (no --keep-* given)"),
    );
  }
  let lastError: unknown;
  try {
    const summary = await runLoop(everyMs, {
      signal: ac.signal,
      maxRuns: opts.once ? 1 : opts.count,
      log: () => {},
      run: async (index) => {
        lastError = await oneRun(index, { opts, cmd, ws, keys, auditKeyPath, policy, emit });
        return "";
      },
    });
    if (lastError !== undefined && (opts.once || summary.runs > 0)) {
      process.exitCode = lastError instanceof UserError ? lastError.exitCode : 70;
    }
  } finally {
    stopListening();
  }
}

interface RunContext {
  opts: ScheduleFlags;
  cmd: Command;
  ws: Workspace;
  keys: { password?: string; recipients?: string[] };
  auditKeyPath?: string;
  policy?: RetentionPolicy;
  emit: (line: string | Record<string, unknown>) => void;
}

/** The exit code an error stands for (70: not a UserError, a bug). */
function exitCodeOf(err: unknown): number {
  return err instanceof UserError ? err.exitCode : 70;
}

/**
 * The prune after a backup, on its own: its failure is not the backup's (the backup stands,
 * verified and recorded). What it deleted before failing is audited all the same.
 */
async function pruneAfter(
  c: RunContext,
  out: Output,
): Promise<{ info?: { kept: number; deleted: number; not_intact: NotIntact[] }; error?: unknown }> {
  let store: BackupStore | undefined;
  try {
    store = await openCatalogue(c.opts.toDir, s3OptionsFrom(c.opts));
    const p = await pruneLocation(store, c.policy!);
    warnNotIntact(out, p);
    await auditPruned(c.ws, store, p, out);
    return { info: { kept: p.kept, deleted: p.deleted, not_intact: p.not_intact } };
  } catch (err) {
    if (err instanceof PruneFailedError && store) {
      warnNotIntact(out, err.result);
      await auditPruned(c.ws, store, err.result, out);
    }
    return { error: err };
  }
}

/**
 * One scheduled backup and prune, logged in one line; returns the error it ended in, if any. A
 * prune that fails after a good backup is reported as the prune's failure: the run's backup is
 * ok (metrics included), so an alert on the backup's age does not fire for it.
 */
async function oneRun(index: number, c: RunContext): Promise<unknown> {
  const { opts, cmd, emit } = c;
  const json = globalsOf(cmd).json;
  const out = Output.of(cmd);
  const started = Date.now();
  let run: BackupJobResult;
  try {
    run = await runBackupJob(c.ws, {
      toDir: opts.toDir,
      password: c.keys.password,
      recipients: c.keys.recipients,
      auditKeyPath: c.auditKeyPath,
      s3: s3OptionsFrom(opts),
      localCopyDir: opts.localCopy,
      fullReadBack: opts.fullReadBack,
      onRetry: (r) => out.warn(`${r.operation}: ${r.error}; retry ${r.attempt}`),
      repositoryHead: () => repositoryHead(c.ws.projectDir),
    });
  } catch (err) {
    if (opts.metricsFile !== undefined) await updateBackupMetrics(cmd, opts.metricsFile, { ok: false });
    const message = err instanceof Error ? err.message : String(err);
    emit(
      json
        ? {
            run: index,
            ok: false,
            error: message,
            exit_code: exitCodeOf(err),
            ...(err instanceof UserError ? err.details : {}),
          }
        : `${new Date().toISOString()} run ${index} FAILED: ${message}`,
    );
    return err;
  }
  const pruned = c.policy ? await pruneAfter(c, out) : {};
  const pruneError = pruned.error;
  const pruneMessage = pruneError instanceof Error ? pruneError.message : String(pruneError);
  const r = run.offsite!;
  const seconds = (Date.now() - started) / 1000;
  emit(
    json
      ? {
          run: index,
          ...backupJson(run),
          seconds,
          prune: pruned.info ?? null,
          ...(pruneError !== undefined
            ? {
                prune_error: {
                  error: pruneMessage,
                  exit_code: exitCodeOf(pruneError),
                  ...(pruneError instanceof UserError ? pruneError.details : {}),
                },
              }
            : {}),
        }
      : `${new Date().toISOString()} run ${index} ok: ${r.location} ${r.produced.size_bytes} bytes ` +
          `sha256 ${r.produced.sha256.slice(0, 12)} retries ${r.retries} in ${seconds.toFixed(1)}s` +
          (pruned.info ? `; prune kept ${pruned.info.kept} deleted ${pruned.info.deleted}` : "") +
          (pruneError !== undefined ? `; prune FAILED: ${pruneMessage}` : ""),
  );
  for (const w of run.warnings) out.warn(w);
  if (opts.metricsFile !== undefined)
    await updateBackupMetrics(cmd, opts.metricsFile, {
      ok: true,
      durationSeconds: seconds,
      sizeBytes: r.produced.size_bytes,
      fileCount: r.produced.file_count ?? 0,
      verified: run.verified,
      ...(c.policy ? { pruned: pruneError === undefined } : {}),
    });
  return pruneError;
}

/**
 * The variable a scheduled run will read its password from: the configuration's
 * `backup.password_env`, or BERNSTEIN_DR_PASSWORD for `--encrypt` without a password file.
 * Recipients (age) need no secret to write.
 */
function passwordEnvOf(opts: ScheduleFlags, cmd: Command): string | undefined {
  if (opts.plain || opts.passwordFile !== undefined || opts.recipient?.length || opts.recipientsFile)
    return undefined;
  const named = loadedConfigOf(cmd).config.backup?.password_env;
  if (named !== undefined) return named;
  return opts.encrypt ? PASSWORD_ENV : undefined;
}

/** `--print-systemd` / `--print-cron`: the units or crontab line that run this schedule. */
function printUnits(opts: ScheduleFlags, cmd: Command, everyMs: number): void {
  const g = globalsOf(cmd);
  const out = Output.of(cmd);
  // A password the configuration file's password_env supplied is not on the command line.
  if (opts.password !== undefined && cmd.getOptionValueSource("password") === "cli") {
    throw new UserError(
      "--print-systemd/--print-cron: a --password would be written into the unit; use --password-file or BERNSTEIN_DR_PASSWORD",
      ExitCode.USAGE,
    );
  }
  const config = (cmd.optsWithGlobals() as { config?: string }).config;
  const spec = {
    executable: path.resolve(process.argv[1] ?? "bernstein"),
    sdd: path.resolve(g.sdd),
    config: config === undefined ? undefined : path.resolve(config),
    args: scheduleArgsFromArgv(process.argv),
    everyMs,
    workingDirectory: process.cwd(),
    user: opts.runAs ?? os.userInfo().username,
    passwordEnv: passwordEnvOf(opts, cmd),
  };
  if (opts.printCron) {
    const text = cronLine(spec);
    if (g.json) out.result({ ok: true, cron: text });
    else process.stdout.write(text);
    return;
  }
  const units = systemdUnits(spec);
  if (g.json) out.result({ ok: true, name: SYSTEMD_UNIT_NAME, systemd: units });
  else process.stdout.write(`${units.service}\n${units.timer}`);
}
