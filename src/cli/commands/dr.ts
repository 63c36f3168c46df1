/**
 * `bernstein dr backup | restore | verify | drill`: the seed's disaster-recovery group.
 * Human output follows the seed's transcript; every command has --json.
 */
import type { Command } from "commander";
import path from "node:path";
import { resolveAuditKeyPath } from "../../audit/key.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { progressFor } from "../progress.js";
import { openWorkspace } from "../../workspace/layout.js";
import { backupPath, backupToFile, planBackup } from "../../dr/backup.js";
import { resolveDecryptPassword, type PasswordFlags } from "../../dr/password.js";
import { encryptionOf } from "../../dr/backup.js";
import {
  addIdentityOption,
  addRecipientOptions,
  resolveIdentities,
  resolveWriteKeys,
  type RecipientFlags,
} from "../age-keys.js";
import type { KeyCache } from "../../dr/fernet.js";
import {
  inspectArchive,
  openArchiveFile,
  restoreFromStream,
  startKeyDerivationFor,
} from "../../dr/restore.js";
import { verifyArchive } from "../../dr/verify.js";
import { readSidecar } from "../../dr/sidecar.js";
import type { DrillReport } from "../../dr/drill.js";
import {
  backupOffsite,
  fileSize,
  isOffsiteDestination,
  isOffsiteSource,
  openBackupSource,
  type ProducedBackup,
} from "../../storage/offsite.js";
import { markVerified } from "../../storage/catalogue.js";
import { recordMetricsOf, reportBackupFacts } from "./dr-metrics.js";
import type { BackupStore } from "../../storage/store.js";
import {
  addRemoteOptions,
  producedFrom,
  recordBackup,
  s3OptionsFrom,
  type RemoteFlags,
} from "./dr-offsite.js";

const short = (sha: string): string => `${sha.slice(0, 16)}...`;
/** A path as the user would type it: relative to the cwd when inside it. */
const shown = (p: string): string => {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
};

interface OpenedSource {
  stream: AsyncIterable<Buffer>;
  label: string;
  /** The archive's sha256 as recorded elsewhere: --sha256, its .sha256 sidecar, or the store. */
  expectSha256?: string;
  expectSha256From?: string;
  /** Off-site sources: where the backup's catalogue record (if any) lives. */
  stored?: { store: BackupStore; name: string };
  /** Bytes to read, when known (progress). */
  size: number;
}

/** The archive to read: a local file, `s3://bucket/key`, or `--latest --at LOCATION`. */
async function openSource(
  opts: RemoteFlags & { from?: string; latest?: boolean; at?: string; sha256?: string },
): Promise<OpenedSource> {
  let opened: OpenedSource;
  if (isOffsiteSource(opts)) {
    const src = await openBackupSource(opts, s3OptionsFrom(opts));
    opened = {
      stream: src.stream,
      label: src.location,
      stored: { store: src.store, name: src.name },
      size: src.size ?? 0,
    };
    if (src.sha256) {
      opened.expectSha256 = src.sha256;
      opened.expectSha256From = "the store's sha256 metadata";
    }
  } else {
    if (opts.from === undefined) {
      throw new UserError("give --from FILE|s3://bucket/key, or --latest --at LOCATION", ExitCode.USAGE);
    }
    opened = {
      stream: await openArchiveFile(opts.from),
      label: opts.from,
      size: (await fileSize(opts.from)) ?? 0,
    };
    const sidecar = await readSidecar(opts.from);
    if (sidecar) {
      opened.expectSha256 = sidecar.sha256;
      opened.expectSha256From = sidecar.file;
    }
  }
  if (opts.sha256 !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(opts.sha256))
      throw new UserError(`--sha256 ${opts.sha256}: not 64 hex digits`, ExitCode.USAGE);
    opened.expectSha256 = opts.sha256.toLowerCase();
    opened.expectSha256From = "--sha256";
  }
  return opened;
}

function addPasswordOptions(cmd: Command): Command {
  return addIdentityOption(
    cmd
      .option(
        "--password <pw>",
        "passphrase (visible in ps: prefer --password-file or $BERNSTEIN_DR_PASSWORD)",
      )
      .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)"),
  );
}

export function registerDr(program: Command): void {
  const dr = program.command("dr").description("disaster recovery: backups, restores, verification, drills");

  addRemoteOptions(
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
  addRecipientOptions(dr.commands.find((c) => c.name() === "backup")!).action(
    async (
      opts: PasswordFlags &
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
        },
      cmd: Command,
    ) => {
      if ((opts.to === undefined) === (opts.toDir === undefined)) {
        throw new UserError("dr backup: give exactly one of --to PATH and --to-dir LOCATION", ExitCode.USAGE);
      }
      const dest = (opts.to ?? opts.toDir)!;
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const keys = await resolveWriteKeys(opts, dest);
      const { password, recipients } = keys;
      for (const w of keys.warnings) out.warn(w);
      const encryption = encryptionOf(keys);
      // The host that writes backups to recipients cannot read them, by design: reading one back
      // takes an identity given on purpose.
      const verifyIdentities =
        opts.verify && recipients ? await resolveIdentities(opts.identityFile) : undefined;
      if (opts.verify && recipients && !verifyIdentities && !isOffsiteDestination(opts)) {
        throw new UserError(
          "--verify of a backup to age recipients reads it back: give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE)",
          ExitCode.USAGE,
        );
      }
      // What --to names once encrypted (the catalogue's names carry .enc/.age by themselves).
      const shownDest = opts.to ? backupPath(opts.to, encryption) : dest;
      const ws = await openWorkspace(g.sdd);
      const keyPath = resolveAuditKeyPath().path;
      if (opts.dryRun) {
        const plan = await planBackup(ws, { encrypt: encryption !== undefined, auditKeyPath: keyPath });
        const excludedFolders = plan.excluded.filter((e) => e.folder);
        const excludedFiles = plan.excluded.filter((e) => !e.folder);
        out.result({ ok: true, dry_run: true, to: shownDest, ...plan }, () => {
          out.line(`Dry run — backing up ${shown(ws.root)} to ${shownDest} would archive:`);
          out.line(`  Files: ${plan.file_count}`);
          out.line(`  Bytes: ${plan.total_bytes}`);
          out.line(
            `  Audit key: ${plan.audit_key_included ? "included (encrypted backup)" : encryption ? "none found" : "left out (plain backup; use --recipient or --encrypt to carry it)"}`,
          );
          if (plan.live_writer)
            out.line(
              "  A live process holds the workspace: the backup will ask it to pause at a decision boundary.",
            );
          out.line(`Excluded (${excludedFolders.length} folders, ${excludedFiles.length} files):`);
          const byReason = new Map<string, number>();
          for (const e of excludedFiles) byReason.set(e.reason, (byReason.get(e.reason) ?? 0) + 1);
          for (const e of excludedFolders) out.line(`  ${e.path}  (${e.reason})`);
          for (const [reason, n] of byReason) out.line(`  ${n} file(s): ${reason}`);
        });
        return;
      }
      out.line(`Backing up ${shown(ws.root)} to ${shownDest}...`);
      const progress = progressFor(out);
      const backupOpts = {
        password,
        recipients,
        auditKeyPath: encryption ? keyPath : undefined,
        onProgress: (phase: string, done: number, total: number) => progress.update(phase, done, total),
      };
      let result!: Awaited<ReturnType<typeof backupToFile>>;
      let location: string;
      let offsiteVerified = false;
      let offsite: { root: string; name: string; remote: boolean } | undefined;
      try {
        if (isOffsiteDestination(opts)) {
          // Off-site (s3:// or a catalogue): storage places the archive we produce.
          const off = await backupOffsite({
            to: opts.to,
            toDir: opts.toDir,
            encrypted: encryption !== undefined,
            force: opts.force,
            produce: async (target, { overwrite }): Promise<ProducedBackup> => {
              // The upload that follows draws its own bar.
              result = await progress.during(
                backupToFile(ws, target, { ...backupOpts, sidecar: false, overwrite }),
              );
              return producedFrom(result);
            },
            s3: s3OptionsFrom(opts),
            localCopyDir: opts.localCopy,
            keepLocal: opts.keepLocal,
            fullReadBack: opts.fullReadBack,
            onRetry: (r) => out.warn(`${r.operation}: ${r.error}; retry ${r.attempt} in ${r.delayMs} ms`),
            onUploadProgress: (done, total) => progress.update("uploading", done, total),
          });
          location = off.location;
          offsiteVerified = off.record !== null;
          offsite = { root: off.root, name: off.name, remote: off.remote };
        } else {
          result = await backupToFile(ws, opts.to!, { ...backupOpts, overwrite: opts.force });
          location = result.path;
        }
      } finally {
        progress.stop();
      }
      let verified = offsiteVerified;
      if (opts.verify && !isOffsiteDestination(opts)) {
        const summary = await progress.during(
          inspectArchive(await openArchiveFile(result.path), {
            password,
            identities: verifyIdentities,
            label: result.path,
            onProgress: (n) => progress.update("reading back", n, result.size_bytes),
          }),
        );
        if (summary.sha256 !== result.sha256 || summary.file_count !== result.file_count) {
          throw new UserError(`backup ${result.path} did not read back identically`, ExitCode.CORRUPT);
        }
        verified = true;
      }
      const auditWarning = await recordBackup(ws, {
        created_at: new Date(result.manifest.created_at * 1000).toISOString(),
        location,
        verified,
        backup: producedFrom(result),
        offsite,
        recipients,
      });
      const warnings = [...result.warnings, ...(auditWarning ? [auditWarning] : [])];
      if (!encryption)
        warnings.push("plain backup: the audit key is not included (encrypted backups carry it)");
      else if (!result.manifest.audit_key_included)
        warnings.push(
          `the encrypted backup does not carry the audit key: none found at ${keyPath} (set BERNSTEIN_AUDIT_KEY_PATH to the workspace's key)`,
        );
      for (const w of warnings) out.warn(w);
      out.result(
        {
          ok: true,
          path: location,
          size_bytes: result.size_bytes,
          file_count: result.file_count,
          sha256: result.sha256,
          manifest_sha256: result.manifest_sha256,
          encrypted: result.encrypted,
          audit_key_included: result.manifest.audit_key_included,
          verified,
          snapshot: result.manifest.snapshot,
          state: result.manifest.state,
          warnings,
        },
        () => {
          out.line("Backup complete!");
          out.line(`  Path: ${opts.to ? shownDest : location}`);
          out.line(`  Size: ${result.size_bytes} bytes`);
          out.line(`  Files: ${result.file_count}`);
          out.line(`  SHA256: ${short(result.sha256)}`);
        },
      );
      reportBackupFacts(cmd, { sizeBytes: result.size_bytes, fileCount: result.file_count, verified });
    },
  );
  recordMetricsOf(dr.commands.find((c) => c.name() === "backup")!);

  addRemoteOptions(
    addPasswordOptions(
      dr
        .command("restore")
        .description("re-hydrate .sdd/ from a backup: staged, hash-checked, fsynced, swapped in atomically")
        .option("--from <path>", "backup file (.tar.gz or .tar.gz.enc) or s3://bucket/key")
        .option("--latest", "the newest backup at --at LOCATION")
        .option("--at <location>", "a catalogue location (folder or s3://bucket/prefix/)")
        .option("--decrypt", "the backup is encrypted (needs a password)")
        .option("--dry-run", "read, decrypt and check the whole archive; list its files; write nothing")
        .option("--force", "restore even while a live process holds the target workspace")
        .option("--no-keep", "remove the previous target instead of keeping it as <target>.pre-restore-<ts>")
        .option(
          "--sha256 <hex>",
          "require the archive's sha256 to be this (default: its .sha256 file, if any)",
        )
        .option(
          "--key-file <file>",
          "where to install the backup's audit key (default: the resolved audit key path)",
        ),
    ),
  ).action(
    async (
      opts: PasswordFlags &
        RemoteFlags & {
          from?: string;
          latest?: boolean;
          at?: string;
          decrypt?: boolean;
          dryRun?: boolean;
          force?: boolean;
          keep: boolean;
          keyFile?: string;
          sha256?: string;
          identityFile?: string;
        },
      cmd: Command,
    ) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const { password, warnings: passwordWarnings } = await resolveDecryptPassword(opts, opts.decrypt);
      for (const w of passwordWarnings) out.warn(w);
      const identities = await resolveIdentities(opts.identityFile);
      const src = await openSource(opts);
      const source = src.stream;
      opts.from = src.label;
      const progress = progressFor(out);
      if (opts.dryRun) {
        const s = await progress.during(
          inspectArchive(source, {
            password,
            identities,
            label: opts.from,
            expectSha256: src.expectSha256,
            expectSha256From: src.expectSha256From,
            onProgress: (n) => progress.update("reading", n, src.size),
          }),
        );
        out.result(
          {
            ok: true,
            dry_run: true,
            source: opts.from,
            file_count: s.file_count,
            sha256: s.sha256,
            size_bytes: s.size_bytes,
            format: s.format,
            encrypted: s.encrypted,
            per_file_hashes: s.per_file_hashes,
            manifest_sha256: s.manifest_sha256,
            audit_key_included: s.audit_key !== undefined,
            files: s.files,
          },
          () => {
            out.line(`Dry run — listing contents of ${opts.from}:`);
            out.line(`  Files: ${s.file_count}`);
            out.line(`  Source: ${opts.from}`);
            out.line(`  SHA256: ${short(s.sha256)}`);
            if (!s.per_file_hashes)
              out.line("  (archive of the Python reference: no per-file hashes to check)");
            out.line("");
            out.line("Files in backup:");
            for (const f of s.files.slice(0, 50)) out.line(f);
            if (s.files.length > 50) out.line(`... and ${s.files.length - 50} more`);
          },
        );
        return;
      }
      const keyCache: KeyCache = new Map();
      if (password !== undefined && !src.stored) await startKeyDerivationFor(src.label, password, keyCache);
      const keyPath = resolveAuditKeyPath({ keyFile: opts.keyFile }).path;
      out.line(`Restoring ${opts.from} into ${shown(g.sdd)}...`);
      const r = await progress.during(
        restoreFromStream(source, g.sdd, {
          label: src.label,
          source: src.label,
          password,
          identities,
          keyCache,
          force: opts.force,
          keep: opts.keep,
          auditKeyPath: keyPath,
          expectSha256: src.expectSha256,
          expectSha256From: src.expectSha256From,
          onProgress: (n) => progress.update("restoring", n, src.size),
        }),
      );
      for (const w of r.warnings) out.warn(w);
      if (r.audit_key.action === "none" && r.audit_key.message) out.warn(r.audit_key.message);
      out.result({ ok: true, ...r, source: opts.from }, () => {
        out.line("Restore complete!");
        out.line(`  Target: ${shown(r.target)}`);
        out.line(`  Files: ${r.file_count}`);
        out.line(`  SHA256: ${short(r.sha256)}`);
        if (r.kept) out.line(`  Previous state kept at: ${shown(r.kept)}`);
        if (r.audit_key.action === "installed") out.line(`  Audit key installed at: ${r.audit_key.path}`);
      });
    },
  );

  addRemoteOptions(
    addPasswordOptions(
      dr
        .command("verify")
        .description(
          "check an archive and the state inside it: WAL chains, audit chain, newest checkpoint (exit 1 on any failure)",
        )
        .option("--from <path>", "backup file or s3://bucket/key")
        .option("--latest", "the newest backup at --at LOCATION")
        .option("--at <location>", "a catalogue location (folder or s3://bucket/prefix/)")
        .option("--decrypt", "the backup is encrypted (needs a password)")
        .option(
          "--key-file <file>",
          "audit key to verify the chain with (default: the key inside an encrypted backup)",
        )
        .option(
          "--sha256 <hex>",
          "require the archive's sha256 to be this (default: its .sha256 file, if any)",
        ),
    ),
  ).action(
    async (
      opts: PasswordFlags &
        RemoteFlags & {
          from?: string;
          latest?: boolean;
          at?: string;
          decrypt?: boolean;
          keyFile?: string;
          sha256?: string;
          identityFile?: string;
        },
      cmd: Command,
    ) => {
      const out = Output.of(cmd);
      const { password, warnings: passwordWarnings } = await resolveDecryptPassword(opts, opts.decrypt);
      for (const w of passwordWarnings) out.warn(w);
      const identities = await resolveIdentities(opts.identityFile);
      const src = await openSource(opts);
      opts.from = src.label;
      const progress = progressFor(out);
      const verified = await progress.during(
        verifyArchive(src.stream, {
          label: src.label,
          password,
          identities,
          keyFile: opts.keyFile,
          expectSha256: src.expectSha256,
          expectSha256From: src.expectSha256From,
          onProgress: (n) => progress.update("verifying", n, src.size),
        }),
      );
      // A catalogue backup that verified gets its record's verified_at refreshed (dr list shows it).
      let recordRefreshed = false;
      if (verified.ok && src.stored) {
        const { store, name } = src.stored;
        recordRefreshed = await markVerified(store, name, verified.sha256).catch((err: Error) => {
          out.warn(`the backup verified, but its record could not be updated: ${err.message}`);
          return false;
        });
      }
      const report = src.stored ? { ...verified, record_refreshed: recordRefreshed } : verified;
      out.result(report, () => {
        out.line(`Verify ${opts.from}:`);
        out.line(`  Files: ${report.file_count}`);
        out.line(`  SHA256: ${short(report.sha256)}`);
        for (const c of report.checks)
          out.line(
            `  [${c.status === "ok" ? "ok" : c.status === "skipped" ? "skip" : "FAIL"}] ${c.name}: ${c.detail}`,
          );
        if (recordRefreshed) out.line(`  Record: verified_at refreshed`);
        out.line(report.ok ? "Archive verified." : "VERIFICATION FAILED");
      });
      if (!report.ok) {
        const check = report.checks.find((c) => c.status === "failed");
        out.failed(
          ExitCode.CHECK_FAILED,
          `dr verify ${opts.from}: verification failed${check ? `: ${check.name}: ${check.detail}` : ""}`,
        );
      }
    },
  );

  addPasswordOptions(
    dr
      .command("drill")
      .description(
        "automated restore drill: backup, dry-run, compare counts, restore to scratch, compare files, doctor; timings",
      )
      .option("--keep <dir>", "keep the drill's backup and restored copy in this folder")
      .option("--encrypt", "drill with an encrypted backup (needs a password)")
      .option("--plain", "drill with a plain backup even where the configuration file turns encryption on"),
  );
  addRecipientOptions(dr.commands.find((c) => c.name() === "drill")!).action(
    async (
      opts: PasswordFlags &
        RecipientFlags & { keep?: string; encrypt?: boolean; plain?: boolean; identityFile?: string },
      cmd: Command,
    ) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const keys = await resolveWriteKeys(opts, undefined);
      for (const w of keys.warnings) out.warn(w);
      const identities = keys.recipients ? await resolveIdentities(opts.identityFile) : undefined;
      if (keys.recipients && !identities) {
        throw new UserError(
          "a drill restores what it backs up: with --recipient, give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE) that opens it",
          ExitCode.USAGE,
        );
      }
      const ws = await openWorkspace(g.sdd);
      // Loaded on use: the drill's doctor checks bring in the orchestrator's task validation.
      const { runDrill } = await import("../../dr/drill.js");
      const { runDoctor } = await import("../../orchestrator/doctor.js");
      const report = await runDrill(ws, {
        doctor: runDoctor,
        keepDir: opts.keep,
        password: keys.password,
        recipients: keys.recipients,
        identities,
      });
      for (const w of report.warnings) out.warn(w);
      out.result(report, () => printDrill(out, report));
      if (!report.ok) {
        const step = report.steps.find((s) => !s.ok);
        out.failed(
          ExitCode.CHECK_FAILED,
          `dr drill failed: ${step ? `${step.name}: ${step.detail}` : "see --json"}`,
        );
      }
    },
  );
}

export function printDrill(out: Output, report: DrillReport): void {
  out.line(`Restore drill of ${shown(report.sdd)} (${report.encrypted ? "encrypted" : "plain"} backup):`);
  for (const s of report.steps) {
    out.line(
      `  [${s.ok ? "ok" : "FAIL"}] ${s.name.padEnd(10)} ${String(s.duration_ms).padStart(7)} ms  ${s.detail}`,
    );
  }
  out.line(`  RTO (restore step): ${report.rto_ms} ms`);
  out.line(report.ok ? "Drill passed." : "DRILL FAILED");
}
