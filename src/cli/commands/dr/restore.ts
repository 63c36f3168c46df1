/** `bernstein dr restore`: flags → restoreFromStream → output. */
import path from "node:path";
import type { Command } from "../../../vendor/commander.js";
import { resolveAuditKeyPath } from "../../../audit/key.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { shellWord } from "../../../workspace/shown-path.js";
import { stopLockHolder } from "../../../orchestrator/control.js";
import { resolveDecryptPassword } from "../../password.js";
import { completeInterruptedRestore, dryRunArchive, restoreFromStream } from "../../../dr/restore.js";
import { UserError } from "../../../errors/errors.js";
import { resolveIdentities } from "../../age-keys.js";
import { Output, globalsOf } from "../../output.js";
import { progressFor } from "../../progress.js";
import { addPasswordOptions, addPointOptions, addRemoteOptions } from "./options.js";
import type { PointFlags } from "./archive-point.js";
import {
  archiveLocation,
  ranOnArchivePoint,
  openSource,
  readingSource,
  short,
  shown,
  storedAt,
  unusedPasswordWarning,
  type SourceFlags,
} from "./source.js";

export function registerRestore(dr: Command): void {
  addRemoteOptions(
    addPasswordOptions(
      addPointOptions(
        dr
          .command("restore")
          .description("re-hydrate .sdd/ from a backup: staged, hash-checked, fsynced, swapped in atomically")
          .option(
            "--from <path>",
            "backup file (.tar.gz, .tar.gz.enc or .tar.gz.age), s3://bucket/key, or a WAL archive (folder or s3://bucket/prefix/)",
          )
          .option(
            "--decrypt",
            "the backup is encrypted with a password (optional: --password, --password-file or $BERNSTEIN_DR_PASSWORD alone is enough)",
          )
          .option("--dry-run", "read, decrypt and check the whole archive; list its files; write nothing")
          .option(
            "--finish",
            "only finish a restore into --sdd that was cut short between its two renames (power loss, SIGKILL); reads no archive",
          )
          .option(
            "--force",
            "stop the live process holding the target workspace (an orchestrator as by `stop --force`), then restore",
          )
          .option(
            "--no-keep",
            "remove the previous target instead of keeping it as <target>.pre-restore-<ts>",
          )
          .option(
            "--sha256 <hex>",
            "require the archive's sha256 to be this (default: its .sha256 file, if any)",
          )
          .option(
            "--key-file <file>",
            "where to install the backup's audit key (default: the resolved audit key path)",
          ),
        "restore",
      ),
    ),
  ).action(
    async (
      opts: SourceFlags & PointFlags & { dryRun?: boolean; finish?: boolean; force?: boolean; keep: boolean },
      cmd: Command,
    ) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      if (opts.finish) return finishCommand(out, g.sdd, opts);
      if (await ranOnArchivePoint("restore", cmd, opts)) return;
      const { password, warnings: passwordWarnings } = await resolveDecryptPassword(opts, opts.decrypt);
      for (const w of passwordWarnings) out.warn(w);
      const identities = await resolveIdentities(opts.identityFile);
      const src = await openSource(opts, g.sdd);
      if (src.note) out.warn(src.note);
      const source = src.stream;
      // Named in messages as the user gave it; a backup that --latest found, as a path from here.
      const named = opts.from ?? shown(src.label);
      const progress = progressFor(out);
      const keyPath = resolveAuditKeyPath({ keyFile: opts.keyFile }).path;
      if (opts.dryRun) {
        const { summary: s, warnings } = await readingSource(src, () =>
          progress.during(
            dryRunArchive(source, {
              password,
              identities,
              label: named,
              expectSha256: src.expectSha256,
              expectSha256From: src.expectSha256From,
              expectAge: src.expectAge,
              expectAgeFrom: src.expectAgeFrom,
              auditKeyPath: keyPath,
              onProgress: (n) => progress.update("reading", n, src.size),
            }),
          ),
        );
        for (const w of warnings) out.warn(w);
        const unusedDry = unusedPasswordWarning({ password, decrypt: opts.decrypt }, s.encrypted);
        if (unusedDry) out.warn(unusedDry);
        out.result(
          {
            ok: true,
            dry_run: true,
            source: src.label,
            file_count: s.file_count,
            sha256: s.sha256,
            size_bytes: s.size_bytes,
            format: s.format,
            encrypted: s.encrypted,
            per_file_hashes: s.per_file_hashes,
            manifest_sha256: s.manifest_sha256,
            audit_key_included: s.audit_key !== undefined,
            files: s.files,
            warnings,
          },
          () => {
            out.line(`Dry run — listing contents of ${named}:`);
            out.line(`  Files: ${s.file_count}`);
            out.line(`  Source: ${named}`);
            out.line(`  SHA256: ${short(s.sha256)}`);
            if (!s.per_file_hashes)
              out.line("  (archive of the Python reference: no per-file hashes to check)");
            out.line("");
            out.line("Files in backup:");
            for (const f of s.files.slice(0, 50)) out.line(shellWord(f));
            if (s.files.length > 50) out.line(`... and ${s.files.length - 50} more`);
          },
        );
        return;
      }
      // A catalogue backup (what `dr.restore` is recorded for) gets its row, which the archive
      // could not hold. Any other archive restores as the bytes it holds, nothing added.
      const { catalogueFolderOf } = await import("../../../storage/catalogue.js");
      const backupLocation = catalogueFolderOf(src.label) !== undefined ? archiveLocation(src) : undefined;
      const r = await readingSource(src, () =>
        progress.during(
          restoreFromStream(source, g.sdd, {
            label: named,
            source: src.label,
            backupLocation,
            password,
            identities,
            stopLiveHolder: opts.force ? stopLockHolder : undefined,
            keep: opts.keep,
            auditKeyPath: keyPath,
            expectSha256: src.expectSha256,
            expectSha256From: src.expectSha256From,
            expectAge: src.expectAge,
            expectAgeFrom: src.expectAgeFrom,
            onStart: () => out.line(`Restoring ${named} into ${shown(g.sdd)}...`),
            archiveBytes: src.size,
            onProgress: (n) => progress.update("restoring", n, src.size),
          }),
        ),
      );
      // A catalogue backup: the chain it carries cannot record that backup, nor what was pruned after.
      const at = await storedAt(src);
      const { recordRestoreEvent } = await import("../../../dr/restore-event.js");
      const event = await recordRestoreEvent(await openWorkspace(r.target), at, r, {
        keyFile: opts.keyFile,
      }).catch((err: Error) => ({
        gone: [],
        warning: `audit event dr.restore not recorded: ${err.message}; \`dr list --check\` may report backups missing`,
      }));
      if (event.warning) r.warnings.push(event.warning);
      const { gone } = event;
      for (const w of r.warnings) out.warn(w);
      const unused = unusedPasswordWarning({ password, decrypt: opts.decrypt }, r.encrypted);
      if (unused) out.warn(unused);
      if (r.audit_key.action === "none" && r.audit_key.message) out.warn(r.audit_key.message);
      out.result({ ok: true, ...r, source: src.label, gone_before_restore: gone }, () => {
        out.line("Restore complete!");
        out.line(`  Target: ${shown(r.target)}`);
        out.line(`  Files: ${r.file_count}`);
        out.line(`  SHA256: ${short(r.sha256)}`);
        if (r.kept) out.line(`  Previous state kept at: ${shown(r.kept)}`);
        if (gone.length > 0)
          out.line(
            `  Gone from ${at.store.root} before the restore (no longer expected by dr list --check): ${gone.join(", ")}`,
          );
        if (r.audit_key.action === "installed" && r.audit_key.path)
          out.line(`  Audit key installed at: ${shown(r.audit_key.path)}`);
      });
    },
  );
}

/** `dr restore --finish`: the journaled swap of an interrupted restore, and nothing else. */
async function finishCommand(
  out: Output,
  sdd: string,
  opts: SourceFlags & PointFlags & { dryRun?: boolean },
) {
  const others = (
    [
      ["--from", opts.from],
      ["--latest", opts.latest],
      ["--at", opts.at],
      ["--at-seq", opts.atSeq],
      ["--generation", opts.generation],
      ["--last-consistent", opts.lastConsistent],
      ["--dry-run", opts.dryRun],
    ] as const
  ).filter(([, v]) => v !== undefined && v !== false);
  if (others.length > 0)
    throw new UserError(
      `--finish reads no archive: it only finishes an interrupted restore, so it cannot go with ${others.map(([n]) => n).join(", ")}`,
    );
  const { action, removedStaging } = await completeInterruptedRestore(sdd);
  const target = shown(path.resolve(sdd));
  out.result(
    {
      ok: true,
      target: path.resolve(sdd),
      finished: action !== undefined,
      action: action ?? null,
      removed_staging: removedStaging,
    },
    () => {
      out.line(
        action
          ? `${action[0]!.toUpperCase()}${action.slice(1)}: ${target} is the restored workspace.`
          : `No interrupted restore at ${target}: nothing to finish.`,
      );
      for (const dir of removedStaging)
        out.line(`Removed ${shown(dir)}: the staging folder of a restore that died before its swap.`);
    },
  );
}
