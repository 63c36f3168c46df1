/** `bernstein dr backup`: flags → runBackupJob (or the dry-run plan) → output. */
import { repositoryHead } from "../../../orchestrator/git/repo.js";
import type { Command } from "../../../vendor/commander.js";
import { resolveAuditKeyPath } from "../../../audit/key.js";
import {
  backupPath,
  checkDestination,
  encryptionOf,
  planBackup,
  type DryRunReport,
} from "../../../dr/backup.js";
import { runBackupJob } from "../../../dr/backup-job.js";
import type { PasswordFlags } from "../../password.js";
import { isOffsiteDestination, makeCatalogueFolder } from "../../../storage/offsite.js";
import { counted } from "../../../workspace/counted.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import {
  addRecipientOptions,
  checkIdentitiesOpen,
  resolveIdentities,
  resolveWriteKeys,
  type RecipientFlags,
} from "../../age-keys.js";
import { Output, globalsOf } from "../../output.js";
import { progressFor } from "../../progress.js";
import { recordMetricsOf, reportBackupFacts } from "../dr-metrics.js";
import { addPasswordOptions, addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./options.js";
import { short, shown } from "./source.js";

type BackupFlags = PasswordFlags &
  RecipientFlags &
  RemoteFlags & {
    plain?: boolean;
    iKnowItIsPlain?: boolean;
    identityFile?: string;
    to?: string;
    toDir?: string;
    encrypt?: boolean;
    dryRun?: boolean;
    force?: boolean;
    verify?: boolean;
    localCopy?: string;
    keepLocal?: boolean;
    fullReadBack?: boolean;
  };

export function registerBackup(dr: Command): void {
  const cmd = addRemoteOptions(
    addPasswordOptions(
      dr
        .command("backup")
        .description("bundle the durable subset of .sdd/ into a gzipped tarball (optionally encrypted)")
        .option(
          "--to <path>",
          "destination file or s3://bucket/key (.enc is appended when encrypting, unless it ends in .enc)",
        )
        .option(
          "--to-dir <location>",
          "a catalogue location (folder or s3://bucket/prefix/): bernstein-backup-<UTC>.tar.gz[.enc] plus a verified record",
        )
        .option("--encrypt", "encrypt with Fernet (PBKDF2-SHA256, 600k iterations); needs a password")
        .option("--plain", "write a plain archive even where the configuration file turns encryption on")
        .option("--metrics-file <file>", "Prometheus textfile-collector file to update (node_exporter)")
        .option("--dry-run", "show what would be archived and excluded, write nothing")
        .option("--force", "replace a backup that exists at --to (refused otherwise, exit 6)")
        .option("--verify", "read the written archive back and check it before reporting success")
        .option("--local-copy <dir>", "remote backups: where the complete local copy is written first")
        .option("--keep-local", "remote backups: keep the local copy after the upload")
        .option("--full-read-back", "remote backups: download every byte again and compare its sha256"),
    ),
  );
  addRecipientOptions(cmd).action(backup);
  recordMetricsOf(cmd);
}

async function backup(opts: BackupFlags, cmd: Command): Promise<void> {
  if ((opts.to === undefined) === (opts.toDir === undefined)) {
    throw new UserError("dr backup: give exactly one of --to PATH and --to-dir LOCATION", ExitCode.USAGE);
  }
  const out = Output.of(cmd);
  const keys = await resolveWriteKeys(opts, opts.to ?? opts.toDir);
  const { password, recipients } = keys;
  for (const w of keys.warnings) out.warn(w);
  const encrypted = encryptionOf(keys) !== undefined;
  // The host that writes backups to recipients cannot read them, by design: reading one back
  // takes an identity given on purpose.
  const identities = opts.verify && recipients ? await resolveIdentities(opts.identityFile) : undefined;
  if (opts.verify && recipients && !identities && !isOffsiteDestination(opts)) {
    throw new UserError(
      "--verify of a backup to age recipients reads it back: give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE)",
      ExitCode.USAGE,
    );
  }
  // Found after the archive is written, a wrong identity would leave a backup no record names.
  if (recipients && identities)
    await checkIdentitiesOpen(identities, recipients, "--verify reads the backup back, nothing written");
  // What --to names once encrypted (the catalogue's names carry .enc/.age by themselves).
  const shownDest = opts.to ? backupPath(opts.to, encryptionOf(keys)) : opts.toDir!;
  const ws = await openWorkspace(globalsOf(cmd).sdd);
  const keyPath = resolveAuditKeyPath().path;
  // Refused before the command says it started, and by a dry run as by the real one: a folder
  // that is not there or not writable, a backup that is.
  if (opts.to && !isOffsiteDestination(opts)) await checkDestination(shownDest, opts.force === true);
  if (opts.toDir) await makeCatalogueFolder(opts.toDir, opts.dryRun === true);
  if (opts.dryRun) {
    const plan = await planBackup(ws, { encrypt: encrypted, auditKeyPath: keyPath });
    out.result({ ok: true, dry_run: true, to: shownDest, ...plan }, () =>
      printPlan(out, plan, `${shown(ws.root)} to ${shownDest}`, encrypted),
    );
    return;
  }
  if (opts.toDir && (await (await import("./archive-point.js")).walArchiveAt(opts.toDir, opts)))
    throw new UserError(
      `--to-dir ${opts.toDir} holds a WAL archive (gen-* objects): its location holds nothing else (dr list and dr prune would take one for the other); give another folder or prefix`,
      ExitCode.USAGE,
    );
  // Said once the job has checked what only it can (an s3:// destination's bucket and name).
  let started = false;
  const sayStarted = (): void => {
    if (started) return;
    started = true;
    out.line(`Backing up ${shown(ws.root)} to ${shownDest}...`);
  };
  const progress = progressFor(out);
  const job = await progress.during(
    runBackupJob(ws, {
      to: opts.to,
      toDir: opts.toDir,
      password,
      recipients,
      identities,
      auditKeyPath: keyPath,
      force: opts.force,
      verify: opts.verify,
      s3: s3OptionsFrom(opts),
      localCopyDir: opts.localCopy,
      keepLocal: opts.keepLocal,
      fullReadBack: opts.fullReadBack,
      onRetry: (r) => out.warn(`${r.operation}: ${r.error}; retry ${r.attempt} in ${r.delayMs} ms`),
      onDestinationChecked: sayStarted,
      // Only for a bar: a backup without one skips the sizes its total needs (one stat a file less).
      onProgress: progress.drawn ? (phase, done, total) => progress.update(phase, done, total) : undefined,
      repositoryHead: () => repositoryHead(ws.projectDir),
    }),
  );
  const warnings = [...job.warnings, ...keyWarnings(encrypted)];
  for (const w of warnings) out.warn(w);
  const a = job.archive;
  out.result(
    {
      ok: true,
      path: job.location,
      size_bytes: a.size_bytes,
      file_count: a.file_count,
      sha256: a.sha256,
      manifest_sha256: a.manifest_sha256,
      encrypted: a.encrypted,
      audit_key_included: a.manifest.audit_key_included,
      verified: job.verified,
      snapshot: a.manifest.snapshot,
      state: a.manifest.state,
      repository: a.manifest.repository ?? null,
      removed_local_copies: (job.offsite?.removed_local_copies ?? []).map((c) => c.path),
      warnings,
    },
    () => {
      out.line("Backup complete!");
      out.line(`  Path: ${opts.to ? shownDest : shown(job.location)}`);
      out.line(`  Size: ${a.size_bytes} bytes`);
      out.line(`  Files: ${a.file_count}`);
      out.line(`  SHA256: ${short(a.sha256)}`);
    },
  );
  reportBackupFacts(cmd, { sizeBytes: a.size_bytes, fileCount: a.file_count, verified: job.verified });
}

/**
 * A plain backup leaves the audit key out, said where it matters (restores verify the chain with
 * it); an encrypted one that does not carry it says why in its own warnings.
 */
function keyWarnings(encrypt: boolean): string[] {
  return encrypt ? [] : ["plain backup: the audit key is not included (encrypted backups carry it)"];
}

function printPlan(out: Output, plan: DryRunReport, what: string, encrypt: boolean): void {
  const excludedFolders = plan.excluded.filter((e) => e.folder);
  const excludedFiles = plan.excluded.filter((e) => !e.folder);
  out.line(`Dry run — backing up ${what} would archive:`);
  out.line(`  Files: ${plan.file_count}`);
  out.line(`  Bytes: ${plan.total_bytes}`);
  out.line(
    `  Audit key: ${plan.audit_key_included ? "included (encrypted backup)" : encrypt ? `left out: ${plan.audit_key_left_out ?? "none found"}` : "left out (plain backup; use --recipient or --encrypt to carry it)"}`,
  );
  if (plan.live_writer)
    out.line("  A live process holds the workspace: the backup will ask it to pause at a decision boundary.");
  out.line(
    `Excluded (${counted(excludedFolders.length, "folder")}, ${counted(excludedFiles.length, "file")}):`,
  );
  for (const e of [...excludedFolders, ...excludedFiles]) out.line(`  ${e.path}  (${e.reason})`);
}
