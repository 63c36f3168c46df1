/**
 * Off-site subcommands attached to the DR engineer's `dr` command group: `dr list`, `dr prune`,
 * `dr schedule`, plus the options and the destination/source hook that `dr backup`,
 * `dr restore` and `dr verify` call for `s3://` URLs and catalogue locations.
 */
import type { Command } from "commander";
import os from "node:os";
import path from "node:path";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { openWorkspace, type Workspace } from "../../workspace/layout.js";
import { resolveAuditKeyPath } from "../../audit/key.js";
import { backupToFile, type BackupFileResult } from "../../dr/backup.js";
import { appendBackupLog } from "../../dr/backup-log.js";
import { recipientFingerprint } from "../../dr/age/keys.js";
import { recordAuditEvent } from "../../dr/audit-event.js";
import { resolveEncryptPassword } from "../../dr/password.js";
import { checkCatalogue, listCatalogue, type CatalogueEntry } from "../../storage/catalogue.js";
import { parseCatalogueLocation } from "../../storage/location.js";
import { backupOffsite, type OffsiteBackupResult, type ProducedBackup } from "../../storage/offsite.js";
import { openCatalogue } from "../../storage/open-store.js";
import { pruneLocation } from "../../storage/prune.js";
import { validatePolicy, type RetentionPolicy } from "../../storage/retention.js";
import { DR_BACKUP_EVENT, backupsFromAudit } from "../../storage/audit-record.js";
import {
  SYSTEMD_UNIT_NAME,
  cronLine,
  formatDuration,
  parseDuration,
  runLoop,
  systemdUnits,
} from "../../storage/schedule.js";
import type { S3Options } from "../../storage/s3-store.js";
import type { RetryInfo } from "../../storage/store.js";
import { checkMetricsFile } from "../../dr/backup-metrics.js";
import { updateBackupMetrics } from "./dr-metrics.js";

export interface RemoteFlags {
  endpoint?: string;
  region?: string;
  retries?: number;
}

export interface KeepFlags {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

function intOption(name: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new UserError(`${name}: expected a whole number >= ${min}, got "${v}"`, ExitCode.USAGE);
    }
    return n;
  };
}

/** `--endpoint`, `--region`, `--retries`: for every command that may talk to S3. */
export function addRemoteOptions(cmd: Command): Command {
  return cmd
    .option(
      "--endpoint <url>",
      "S3-compatible endpoint (env BERNSTEIN_S3_ENDPOINT); uses path-style addressing",
    )
    .option("--region <region>", "S3 region (default AWS_REGION or the AWS config)")
    .option(
      "--retries <n>",
      "retries of transient S3 failures (5xx, throttling, resets)",
      intOption("--retries"),
      3,
    );
}

export function s3OptionsFrom(flags: RemoteFlags): S3Options {
  return { endpoint: flags.endpoint, region: flags.region, retries: flags.retries };
}

export function addKeepOptions(cmd: Command): Command {
  return cmd
    .option("--keep-last <n>", "keep the newest N backups", intOption("--keep-last"))
    .option(
      "--keep-hourly <n>",
      "keep the newest backup of each of the last N hours that have one",
      intOption("--keep-hourly"),
    )
    .option(
      "--keep-daily <n>",
      "keep the newest backup of each of the last N days that have one",
      intOption("--keep-daily"),
    )
    .option(
      "--keep-weekly <n>",
      "keep the newest backup of each of the last N ISO weeks",
      intOption("--keep-weekly"),
    )
    .option(
      "--keep-monthly <n>",
      "keep the newest backup of each of the last N months",
      intOption("--keep-monthly"),
    );
}

export function policyFrom(flags: KeepFlags): RetentionPolicy {
  return {
    last: flags.keepLast,
    hourly: flags.keepHourly,
    daily: flags.keepDaily,
    weekly: flags.keepWeekly,
    monthly: flags.keepMonthly,
  };
}

export function hasKeepFlags(flags: KeepFlags): boolean {
  return Object.values(policyFrom(flags)).some((v) => v !== undefined);
}

function humanSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function entryJson(e: CatalogueEntry) {
  return {
    name: e.name,
    created_at: e.created.toISOString(),
    size_bytes: e.size,
    file_count: e.record?.file_count ?? null,
    encrypted: e.encrypted,
    source_host: e.record?.source_host ?? null,
    sha256: e.record?.sha256 ?? null,
    manifest_sha256: e.record?.manifest_sha256 ?? null,
    verified: e.verified,
    verified_at: e.record?.verified_at ?? null,
  };
}

function findDrCommand(program: Command): Command {
  // The DR engineer's module registers `dr` first; we only attach to it. Should it be missing
  // (this module used alone), a bare group keeps our subcommands reachable.
  return (
    program.commands.find((c) => c.name() === "dr") ??
    program.command("dr").description("disaster recovery: backups, restore, verification")
  );
}

export function registerDrOffsite(program: Command): void {
  const dr = findDrCommand(program);
  registerSchedule(dr);

  addRemoteOptions(
    dr
      .command("list")
      .description(
        "list the backups at a location (folder or s3://bucket/prefix/); foreign files are ignored",
      )
      .requiredOption("--at <location>", "folder or s3://bucket/prefix/")
      .option("--check", "compare with what the audit chain says was written here (missing, replaced)")
      .option("--deep", "with --check: hash every byte instead of trusting stored sha256 metadata"),
  ).action(async (opts: RemoteFlags & { at: string; check?: boolean; deep?: boolean }, cmd: Command) => {
    const out = Output.of(cmd);
    const store = await openCatalogue(opts.at, s3OptionsFrom(opts));
    const cat = await listCatalogue(store);
    const backups = [...cat.entries].reverse().map(entryJson);
    let findings: Awaited<ReturnType<typeof checkCatalogue>> | undefined;
    if (opts.check) {
      const ws = await openWorkspace(globalsOf(cmd).sdd);
      findings = await checkCatalogue(store, await backupsFromAudit(ws, store.root), { deep: opts.deep });
    }
    const bad = findings?.filter((f) => f.status === "missing" || f.status === "replaced") ?? [];
    out.result(
      {
        ok: bad.length === 0,
        location: store.root,
        backups,
        foreign_ignored: cat.foreign,
        ...(findings ? { check: findings } : {}),
      },
      () => {
        if (backups.length === 0) out.line(`no bernstein backups at ${store.root}`);
        else {
          out.line(`${backups.length} backup(s) at ${store.root} (newest first):`);
          out.line(
            "created_at            size       files  enc  verified  host            sha256        name",
          );
          for (const b of backups) {
            out.line(
              [
                b.created_at.replace(".000Z", "Z").padEnd(21),
                humanSize(b.size_bytes).padStart(10),
                String(b.file_count ?? "?").padStart(6),
                (b.encrypted ? "yes" : "no").padEnd(4),
                (b.verified ? "yes" : "NO").padEnd(9),
                (b.source_host ?? "?").slice(0, 15).padEnd(15),
                (b.sha256 ?? "?").slice(0, 12).padEnd(13),
                b.name,
              ].join(" "),
            );
          }
        }
        if (cat.foreign.length > 0) out.line(`${cat.foreign.length} foreign file(s) ignored (never pruned)`);
        if (findings) {
          for (const f of findings) out.line(`${f.status.padEnd(10)} ${f.name}: ${f.detail}`);
          out.line(
            bad.length === 0
              ? "check: every backup the audit chain recorded here is present and unchanged"
              : `check FAILED: ${bad.length} backup(s) missing or replaced`,
          );
        }
      },
    );
    if (bad.length > 0)
      out.failed(
        ExitCode.CHECK_FAILED,
        `dr list --check: ${bad.length} backup(s) missing or replaced at ${store.root}; first: ${bad[0]!.name}: ${bad[0]!.detail}`,
      );
  });

  addRemoteOptions(
    addKeepOptions(
      dr
        .command("prune")
        .description(
          "delete old backups at a location by restic-style keep rules; never the newest verified one",
        )
        .requiredOption("--at <location>", "folder or s3://bucket/prefix/")
        .option("--dry-run", "show what would be kept and deleted, delete nothing"),
    ),
  ).action(async (opts: RemoteFlags & KeepFlags & { at: string; dryRun?: boolean }, cmd: Command) => {
    const out = Output.of(cmd);
    const policy = policyFrom(opts);
    validatePolicy(policy);
    const store = await openCatalogue(opts.at, s3OptionsFrom(opts));
    const res = await pruneLocation(store, policy, { dryRun: opts.dryRun });
    out.result({ ok: true, ...res }, () => {
      for (const d of res.decisions) {
        const verb = d.action === "keep" ? "keep  " : res.dry_run ? "would delete" : "delete";
        out.line(`${verb} ${d.name}  (${d.reasons.join("; ")})`);
      }
      out.line(
        `${res.kept} kept, ${res.dry_run ? `${res.decisions.length - res.kept} would be deleted` : `${res.deleted} deleted`}` +
          (res.foreign_ignored.length ? `, ${res.foreign_ignored.length} foreign file(s) left alone` : ""),
      );
    });
  });
}

// ---------------------------------------------------------------------------------------------
// `dr schedule`: the same off-site backup `dr backup --to-dir` takes (src/cli/commands/dr.ts),
// run every interval, followed by a prune.

export interface OffsiteBackupFlags extends RemoteFlags {
  to?: string;
  toDir?: string;
  localCopy?: string;
  keepLocal?: boolean;
  fullReadBack?: boolean;
}

export interface OffsiteRun {
  result: OffsiteBackupResult;
  warnings: string[];
  created_at: string;
}

/** The facts storage needs of an archive `backupToFile` wrote. */
export function producedFrom(r: BackupFileResult): ProducedBackup {
  return {
    path: r.path,
    sha256: r.sha256,
    manifest_sha256: r.manifest_sha256,
    file_count: r.file_count,
    size_bytes: r.size_bytes,
    encrypted: r.encrypted,
    wal_positions: r.manifest.state.wal,
  };
}

/**
 * What every backup leaves in its workspace: a row in runs/backups.jsonl (dr status, RPO) and one
 * `dr.backup` audit event (dr list --check; off-site backups add their catalogue root and name).
 * Returns the warning when the event could not be appended.
 */
export async function recordBackup(
  ws: Workspace,
  o: {
    created_at: string;
    location: string;
    verified: boolean;
    backup: ProducedBackup;
    offsite?: { root: string; name: string; remote: boolean };
    /** An `.age` backup's recipients (recorded with their fingerprints, for rekey and `dr list`). */
    recipients?: readonly string[];
  },
): Promise<string | undefined> {
  const b = o.backup;
  const keys = o.recipients?.length
    ? { recipients: [...o.recipients], recipient_fingerprints: o.recipients.map(recipientFingerprint) }
    : {};
  await appendBackupLog(ws, {
    created_at: o.created_at,
    location: o.location,
    sha256: b.sha256,
    manifest_sha256: b.manifest_sha256 ?? "",
    file_count: b.file_count ?? 0,
    size_bytes: b.size_bytes,
    encrypted: b.encrypted,
    verified: o.verified,
    ...(b.wal_positions ? { wal_positions: b.wal_positions } : {}),
    ...keys,
  });
  const audit = await recordAuditEvent(ws, {
    event_type: DR_BACKUP_EVENT,
    resource_type: "backup",
    resource_id: o.location,
    details: {
      sha256: b.sha256,
      manifest_sha256: b.manifest_sha256,
      file_count: b.file_count,
      size_bytes: b.size_bytes,
      encrypted: b.encrypted,
      ...(o.offsite ?? {}),
    },
  });
  return audit.warning;
}

/** One off-site backup: produce (src/dr), store, verify, record in runs/backups.jsonl and the audit chain. */
export async function runOffsiteBackup(
  ws: Workspace,
  flags: OffsiteBackupFlags,
  secrets: { password?: string; auditKeyPath?: string },
  hooks: { onRetry?: (info: RetryInfo) => void; now?: Date } = {},
): Promise<OffsiteRun> {
  const warnings: string[] = [];
  const result = await backupOffsite({
    to: flags.to,
    toDir: flags.toDir,
    encrypted: secrets.password !== undefined,
    s3: s3OptionsFrom(flags),
    localCopyDir: flags.localCopy,
    keepLocal: flags.keepLocal,
    fullReadBack: flags.fullReadBack,
    onRetry: hooks.onRetry,
    now: hooks.now,
    produce: async (target, { overwrite }) => {
      const r = await backupToFile(ws, target, {
        password: secrets.password,
        auditKeyPath: secrets.auditKeyPath,
        sidecar: false,
        overwrite,
      });
      warnings.push(...r.warnings);
      return producedFrom(r);
    },
  });
  const created_at = result.created_at;
  const auditWarning = await recordBackup(ws, {
    created_at,
    location: result.location,
    verified: true,
    backup: result.produced,
    offsite: { root: result.root, name: result.name, remote: result.remote },
  });
  if (auditWarning) warnings.push(auditWarning);
  return { result, warnings, created_at };
}

function backupJson(run: OffsiteRun) {
  const r = run.result;
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
    verified: true,
    retries: r.retries,
    local_copy: r.local_copy,
    created_at: run.created_at,
    warnings: run.warnings,
  };
}

/** `dr schedule` arguments to repeat in a unit or crontab: everything after `schedule` but --print-*. */
function scheduleArgsFromArgv(argv: string[]): string[] {
  const i = argv.indexOf("schedule");
  const rest = i < 0 ? [] : argv.slice(i + 1);
  const args: string[] = [];
  for (let k = 0; k < rest.length; k++) {
    const a = rest[k]!;
    // Printer-only flags; --config is put before the command by the printer.
    if (a === "--run-as" || a === "--config") k++;
    else if (
      !["--print-systemd", "--print-cron", "--json", "--once"].includes(a) &&
      !/^--(run-as|config)=/.test(a)
    )
      args.push(a);
  }
  return args;
}

function registerSchedule(dr: Command): void {
  addRemoteOptions(
    addKeepOptions(
      dr
        .command("schedule")
        .description(
          "take a backup every DURATION (foreground, for systemd/cron), prune after each success, one log line per run",
        )
        .requiredOption("--every <duration>", "interval: 90s, 15m, 1h, 1h30m, 1d")
        .requiredOption("--to-dir <location>", "catalogue location: folder or s3://bucket/prefix/")
        .option("--encrypt", "encrypt each backup (needs --password-file or BERNSTEIN_DR_PASSWORD)")
        .option("--plain", "plain backups even where the configuration file turns encryption on")
        .option("--metrics-file <file>", "Prometheus textfile-collector file to update after each run")
        .option("--password <pw>", "passphrase (prefer --password-file or $BERNSTEIN_DR_PASSWORD)")
        .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)")
        .option("--local-copy <dir>", "where the local copy of a remote backup is written before upload")
        .option("--full-read-back", "after each upload, download every byte again and compare its sha256")
        .option("--once", "one backup + prune, then exit (what cron runs)")
        .option("--count <n>", "stop after N runs", intOption("--count", 1))
        .option(
          "--print-systemd",
          "print a systemd oneshot service and its .timer for this schedule and exit",
        )
        .option("--run-as <user>", "with --print-systemd: the service's User= (default: the current user)")
        .option("--print-cron", "print a crontab line for this schedule and exit"),
    ),
  ).action(
    async (
      opts: RemoteFlags &
        KeepFlags & {
          every: string;
          toDir: string;
          encrypt?: boolean;
          password?: string;
          passwordFile?: string;
          localCopy?: string;
          fullReadBack?: boolean;
          once?: boolean;
          count?: number;
          metricsFile?: string;
          runAs?: string;
          printSystemd?: boolean;
          printCron?: boolean;
        },
      cmd: Command,
    ) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const everyMs = parseDuration(opts.every);
      parseCatalogueLocation(opts.toDir);
      const policy = hasKeepFlags(opts) ? policyFrom(opts) : undefined;
      if (policy) validatePolicy(policy);
      if (opts.printSystemd || opts.printCron) {
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
        return;
      }
      const { password, warnings: passwordWarnings } = await resolveEncryptPassword(opts, opts.encrypt);
      for (const w of passwordWarnings) out.warn(w);
      if (opts.metricsFile !== undefined) await checkMetricsFile(opts.metricsFile);
      const ws = await openWorkspace(g.sdd);
      const auditKeyPath = opts.encrypt ? resolveAuditKeyPath().path : undefined;
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      let lastError: unknown;
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
      try {
        const summary = await runLoop(everyMs, {
          signal: ac.signal,
          maxRuns: opts.once ? 1 : opts.count,
          log: () => {},
          run: async (index) => {
            const started = Date.now();
            try {
              const run = await runOffsiteBackup(
                ws,
                { ...opts, password: undefined } as OffsiteBackupFlags,
                { password: opts.encrypt ? password : undefined, auditKeyPath },
                { onRetry: (r) => out.warn(`${r.operation}: ${r.error}; retry ${r.attempt}`) },
              );
              let pruneInfo: { kept: number; deleted: number } | undefined;
              if (policy) {
                const store = await openCatalogue(opts.toDir, s3OptionsFrom(opts));
                const p = await pruneLocation(store, policy);
                pruneInfo = { kept: p.kept, deleted: p.deleted };
              }
              lastError = undefined;
              const r = run.result;
              const seconds = (Date.now() - started) / 1000;
              emit(
                g.json
                  ? { run: index, ...backupJson(run), seconds, prune: pruneInfo ?? null }
                  : `${new Date().toISOString()} run ${index} ok: ${r.location} ${r.produced.size_bytes} bytes ` +
                      `sha256 ${r.produced.sha256.slice(0, 12)} retries ${r.retries} in ${seconds.toFixed(1)}s` +
                      (pruneInfo ? `; prune kept ${pruneInfo.kept} deleted ${pruneInfo.deleted}` : ""),
              );
              for (const w of run.warnings) out.warn(w);
              if (opts.metricsFile !== undefined)
                await updateBackupMetrics(cmd, opts.metricsFile, {
                  ok: true,
                  durationSeconds: seconds,
                  sizeBytes: r.produced.size_bytes,
                  fileCount: r.produced.file_count ?? 0,
                  verified: true,
                });
            } catch (err) {
              lastError = err;
              if (opts.metricsFile !== undefined)
                await updateBackupMetrics(cmd, opts.metricsFile, { ok: false });
              const message = err instanceof Error ? err.message : String(err);
              emit(
                g.json
                  ? {
                      run: index,
                      ok: false,
                      error: message,
                      exit_code: err instanceof UserError ? err.exitCode : 70,
                      ...(err instanceof UserError ? err.details : {}),
                    }
                  : `${new Date().toISOString()} run ${index} FAILED: ${message}`,
              );
            }
            return "";
          },
        });
        if (lastError !== undefined && (opts.once || summary.runs > 0)) {
          process.exitCode = lastError instanceof UserError ? lastError.exitCode : 70;
        }
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    },
  );
}
