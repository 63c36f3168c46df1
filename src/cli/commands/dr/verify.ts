/** `bernstein dr verify`: flags → verifyArchive → output (and a refreshed catalogue record). */
import type { Command } from "../../../vendor/commander.js";
import { resolveDecryptPassword } from "../../password.js";
import { verifyArchive } from "../../../dr/verify.js";
import { markVerified } from "../../../storage/catalogue.js";
import { markBackupVerified } from "../../../dr/backup-log.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { resolveIdentities } from "../../age-keys.js";
import { Output, globalsOf } from "../../output.js";
import { progressFor } from "../../progress.js";
import { addPasswordOptions, addPointOptions, addRemoteOptions } from "./options.js";
import type { PointFlags } from "./archive-point.js";
import {
  archiveLocation,
  cataloguedFingerprints,
  ranOnArchivePoint,
  openSource,
  readingSource,
  short,
  shown,
  type SourceFlags,
  unusedPasswordWarning,
} from "./source.js";

export function registerVerify(dr: Command): void {
  addRemoteOptions(
    addPasswordOptions(
      addPointOptions(
        dr
          .command("verify")
          .description(
            "check an archive and the state inside it: WAL chains, audit chain, newest checkpoint (exit 1 on any failure)",
          )
          .option(
            "--from <path>",
            "backup file, s3://bucket/key, or a WAL archive (folder or s3://bucket/prefix/)",
          )
          .option(
            "--decrypt",
            "the backup is encrypted with a password (optional: --password, --password-file or $BERNSTEIN_DR_PASSWORD alone is enough)",
          )
          .option(
            "--key-file <file>",
            "audit key to verify the chain with (default: the key inside an encrypted backup)",
          )
          .option(
            "--sha256 <hex>",
            "require the archive's sha256 to be this (default: its .sha256 file, if any)",
          ),
        "check",
      ),
    ),
  ).action(async (opts: SourceFlags & PointFlags, cmd: Command) => {
    const out = Output.of(cmd);
    if (await ranOnArchivePoint("verify", cmd, opts)) return;
    const { password, warnings: passwordWarnings } = await resolveDecryptPassword(opts, opts.decrypt);
    for (const w of passwordWarnings) out.warn(w);
    const identities = await resolveIdentities(opts.identityFile);
    const src = await openSource(opts, globalsOf(cmd).sdd);
    if (src.note) out.warn(src.note);
    // Named in messages as the user gave it; a backup that --latest found, as a path from here.
    const named = opts.from ?? shown(src.label);
    const progress = progressFor(out);
    const verified = await readingSource(src, async () =>
      progress.during(
        verifyArchive(src.stream, {
          label: named,
          password,
          identities,
          recipientFingerprints: identities && (await cataloguedFingerprints(globalsOf(cmd).sdd, src.label)),
          keyFile: opts.keyFile,
          expectSha256: src.expectSha256,
          expectSha256From: src.expectSha256From,
          expectAge: src.expectAge,
          expectAgeFrom: src.expectAgeFrom,
          archiveBytes: src.size,
          onProgress: (n) => progress.update("verifying", n, src.size),
        }),
      ),
    );
    const unused = unusedPasswordWarning({ password, decrypt: opts.decrypt }, verified.encrypted);
    if (unused) out.warn(unused);
    // A catalogue backup that verified gets its record's verified_at refreshed (dr list shows it).
    let recordRefreshed = false;
    if (verified.ok && src.stored) {
      const { store, name } = src.stored;
      recordRefreshed = await markVerified(store, name, verified.sha256, src.expectAge).catch(
        (err: Error) => {
          out.warn(`the backup verified, but its record could not be updated: ${err.message}`);
          return false;
        },
      );
    }
    // The workspace's own record (`dr status`: "never read back") learns it too.
    let rowVerified = false;
    if (verified.ok) {
      // A host that only reads backups has no workspace: nothing to update there.
      const ws = await openWorkspace(globalsOf(cmd).sdd).catch((err: unknown) => {
        if (err instanceof UserError) return undefined;
        throw err;
      });
      if (ws)
        rowVerified = await markBackupVerified(ws, archiveLocation(src), verified.sha256).catch(
          (err: Error) => {
            out.warn(`the backup verified, but runs/backups.jsonl could not be updated: ${err.message}`);
            return false;
          },
        );
    }
    const report = {
      ...verified,
      ...(src.stored ? { record_refreshed: recordRefreshed } : {}),
      backup_log_verified: rowVerified,
    };
    out.result(report, () => {
      out.line(`Verify ${named}:`);
      out.line(`  Files: ${report.file_count}`);
      out.line(`  SHA256: ${short(report.sha256)}`);
      for (const c of report.checks)
        out.line(
          `  [${c.status === "ok" ? "ok" : c.status === "skipped" ? "skip" : "FAIL"}] ${c.name}: ${c.detail}`,
        );
      if (recordRefreshed) out.line(`  Record: verified_at refreshed`);
      if (rowVerified) out.line(`  Workspace record: runs/backups.jsonl row now verified`);
      out.line(report.ok ? "Archive verified." : "VERIFICATION FAILED");
    });
    if (!report.ok) {
      const check = report.checks.find((c) => c.status === "failed");
      out.failed(
        ExitCode.CHECK_FAILED,
        `dr verify ${named}: verification failed${check ? `: ${check.name}: ${check.detail}` : ""}`,
      );
    }
  });
}
