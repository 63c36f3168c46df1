/**
 * Off-site subcommands attached to the DR engineer's `dr` command group: `dr list`, `dr prune`,
 * `dr schedule`, plus the options and the destination/source hook that `dr backup`,
 * `dr restore` and `dr verify` call for `s3://` URLs and catalogue locations.
 */
import type { Command } from "commander";
import { ExitCode, UserError } from "../errors.js";
import { Output, globalsOf } from "../output.js";
import { openWorkspace } from "../../workspace/layout.js";
import { checkCatalogue, listCatalogue, type CatalogueEntry } from "../../storage/catalogue.js";
import { openCatalogue } from "../../storage/open-store.js";
import { pruneLocation } from "../../storage/prune.js";
import { validatePolicy, type RetentionPolicy } from "../../storage/retention.js";
import { backupsFromAudit } from "../../storage/audit-record.js";
import type { S3Options } from "../../storage/s3-store.js";

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
    if (bad.length > 0) process.exitCode = ExitCode.CHECK_FAILED;
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
