/**
 * `bernstein dr rekey`: rotate the keys of encrypted archives (src/dr/rekey.ts). For `.age`
 * only the header is rewritten; `.enc` archives are re-encrypted streaming with
 * `--new-password-file`, or converted to age with `--to-age`. `--all` rekeys every archive of
 * the workspace's catalogue and resumes after a kill.
 */
import type { Command } from "../../../vendor/commander.js";
import { resolveDecryptPassword, resolvePassword } from "../../password.js";
import {
  rekeyAll,
  rekeyAllAt,
  rekeyArchive,
  rekeyObject,
  type RekeyOutcome,
  type RekeyRequest,
} from "../../../dr/rekey.js";
import { isS3Url } from "../../../storage/location.js";
import { openCatalogue, openObject } from "../../../storage/open-store.js";
import { addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./options.js";
import { openWorkspace, type Workspace } from "../../../workspace/layout.js";
import { describeBackupLogProblem, type BackupLogProblem } from "../../../dr/backup-log.js";
import { collect, resolveIdentities, resolveRecipients } from "../../age-keys.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { Output, globalsOf } from "../../output.js";

interface RekeyFlags extends RemoteFlags {
  from?: string;
  all?: boolean;
  at?: string;
  identityFile?: string;
  addRecipient?: string[];
  removeRecipient?: string[];
  recipientsFile?: string;
  passwordFile?: string;
  newPasswordFile?: string;
  toAge?: boolean;
}

async function requestOf(opts: RekeyFlags): Promise<RekeyRequest> {
  const add = await resolveRecipients({ recipient: opts.addRecipient });
  const fullSet = opts.recipientsFile
    ? await resolveRecipients({ recipientsFile: opts.recipientsFile })
    : undefined;
  const remove = opts.removeRecipient ?? [];
  if (opts.recipientsFile && remove.length) {
    throw new UserError(
      "--recipients-file is the new full set: --remove-recipient has no meaning with it",
      ExitCode.USAGE,
    );
  }
  const old = await resolveDecryptPassword({ passwordFile: opts.passwordFile }, false);
  const newPassword = opts.newPasswordFile
    ? (await resolvePassword({ passwordFile: opts.newPasswordFile }, {})).password
    : undefined;
  if (!add.length && !remove.length && !fullSet && newPassword === undefined) {
    throw new UserError(
      "nothing to change: --add-recipient, --remove-recipient, --recipients-file, or --new-password-file",
      ExitCode.USAGE,
    );
  }
  return {
    identities: await resolveIdentities(opts.identityFile),
    password: old.password,
    add,
    remove,
    fullSet,
    newPassword,
    toAge: opts.toAge,
  };
}

function humanLine(o: RekeyOutcome): string {
  const who = o.recipient_fingerprints ? ` (recipients ${o.recipient_fingerprints.join(", ")})` : "";
  if (o.action === "already-done") return `${o.path}: already rekeyed${who}`;
  if (o.action === "converted-to-age") return `${o.from} -> ${o.path}: converted to age${who}`;
  if (o.action === "re-encrypted") return `${o.path}: re-encrypted with the new password`;
  const how = o.in_place
    ? "in place"
    : o.method === "server-copy"
      ? "payload copied inside the store"
      : o.method === "streamed"
        ? "payload streamed again, byte for byte"
        : "payload copied as it is";
  return `${o.path}: header rewritten, payload untouched (${how})${who}`;
}

/** The archives `opts` names, rekeyed: one (`--from`), the catalogue's, or a location's (`--all --at`). */
async function rekeyWhat(
  opts: RekeyFlags,
  req: RekeyRequest,
  ws: Workspace | undefined,
  problems: BackupLogProblem[],
) {
  const s3 = s3OptionsFrom(opts);
  if (opts.all && opts.at !== undefined)
    return rekeyAllAt(ws!, await openCatalogue(opts.at, s3), req, problems);
  if (opts.all) return rekeyAll(ws!, req, problems);
  if (!isS3Url(opts.from!)) return [await rekeyArchive(opts.from!, req, ws)];
  const { store, key } = await openObject(opts.from!, s3);
  return [await rekeyObject(store, key, req, ws)];
}

export function registerRekey(dr: Command): void {
  const cmd = dr
    .command("rekey")
    .description("rotate the keys of encrypted archives (.age: header only; .enc: re-encrypted)")
    .option("--from <location>", "the archive (a local .tar.gz.age or .tar.gz.enc, or s3://bucket/key.age)")
    .option("--all", "every encrypted archive in the workspace's catalogue (resumable)")
    .option("--at <location>", "with --all: every .age backup of this catalogue location (a folder or s3://)")
    .option(
      "--identity-file <file>",
      "an age identity that opens the archive (or $BERNSTEIN_DR_IDENTITY_FILE)",
    )
    .option("--add-recipient <age1...>", "give access to this recipient (repeatable)", collect)
    .option("--remove-recipient <age1...>", "take access from this recipient (repeatable)", collect)
    .option("--recipients-file <file>", "the new full set of recipients (age's format)")
    .option("--password-file <file>", "the password of a .enc archive (or $BERNSTEIN_DR_PASSWORD)")
    .option("--new-password-file <file>", "re-encrypt a .enc archive with this password")
    .option("--to-age", "convert a .enc archive to age, for the recipients given");
  addRemoteOptions(cmd).action(async (opts: RekeyFlags, cmd: Command) => {
    const out = Output.of(cmd);
    if (Boolean(opts.from) === Boolean(opts.all)) {
      throw new UserError("give either --from LOCATION or --all", ExitCode.USAGE);
    }
    if (opts.at !== undefined && !opts.all) throw new UserError("--at goes with --all", ExitCode.USAGE);
    if (opts.from?.includes("://") && !isS3Url(opts.from)) {
      throw new UserError(`--from ${opts.from}: a local archive or s3://bucket/key`, ExitCode.USAGE);
    }
    const req = await requestOf(opts);
    const g = globalsOf(cmd);
    const ws: Workspace | undefined = opts.all
      ? await openWorkspace(g.sdd)
      : await openWorkspace(g.sdd).catch(() => undefined);
    const unreadable: BackupLogProblem[] = [];
    const outcomes = await rekeyWhat(opts, req, ws, unreadable);
    for (const o of outcomes) {
      if (o.lock_warning) out.warn(o.lock_warning);
      if (o.audit_warning) out.warn(o.audit_warning);
    }
    // `--all` goes by the catalogue: an archive recorded on a line that cannot be read was not
    // rekeyed, and a recipient being removed may still open it. With --at the store lists the
    // archives; the line's recipients were what was lost.
    const consequence =
      opts.at === undefined
        ? "an archive it recorded was not rekeyed"
        : "the recipients it recorded were not known";
    for (const p of unreadable) out.warn(describeBackupLogProblem(p, consequence));
    const unreadableRows = unreadable.length ? { unreadable_backup_rows: unreadable } : {};
    out.result({ ok: true, archives: outcomes, ...unreadableRows }, () => {
      for (const o of outcomes) out.line(humanLine(o));
      if (opts.all && !outcomes.length) out.line("no encrypted archive in the catalogue");
    });
  });
}
