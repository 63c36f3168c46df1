/**
 * `bernstein dr rekey`: rotate the keys of encrypted archives (src/dr/rekey.ts). For `.age`
 * only the header is rewritten; `.enc` archives are re-encrypted streaming with
 * `--new-password-file`, or converted to age with `--to-age`. `--all` rekeys every archive of
 * the workspace's catalogue and resumes after a kill.
 */
import type { Command } from "commander";
import { resolveDecryptPassword, resolvePassword } from "../../password.js";
import { rekeyAll, rekeyArchive, type RekeyOutcome, type RekeyRequest } from "../../../dr/rekey.js";
import { openWorkspace, type Workspace } from "../../../workspace/layout.js";
import { collect, resolveIdentities, resolveRecipients } from "../../age-keys.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { Output, globalsOf } from "../../output.js";

interface RekeyFlags {
  from?: string;
  all?: boolean;
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
  const how = o.in_place ? "in place" : "payload copied as it is";
  return `${o.path}: header rewritten, payload untouched (${how})${who}`;
}

export function registerRekey(dr: Command): void {
  dr.command("rekey")
    .description("rotate the keys of encrypted archives (.age: header only; .enc: re-encrypted)")
    .option("--from <location>", "the archive (a local .tar.gz.age or .tar.gz.enc)")
    .option("--all", "every encrypted archive in the workspace's catalogue (resumable)")
    .option(
      "--identity-file <file>",
      "an age identity that opens the archive (or $BERNSTEIN_DR_IDENTITY_FILE)",
    )
    .option("--add-recipient <age1...>", "give access to this recipient (repeatable)", collect)
    .option("--remove-recipient <age1...>", "take access from this recipient (repeatable)", collect)
    .option("--recipients-file <file>", "the new full set of recipients (age's format)")
    .option("--password-file <file>", "the password of a .enc archive (or $BERNSTEIN_DR_PASSWORD)")
    .option("--new-password-file <file>", "re-encrypt a .enc archive with this password")
    .option("--to-age", "convert a .enc archive to age, for the recipients given")
    .action(async (opts: RekeyFlags, cmd: Command) => {
      const out = Output.of(cmd);
      if (Boolean(opts.from) === Boolean(opts.all)) {
        throw new UserError("give either --from LOCATION or --all", ExitCode.USAGE);
      }
      if (opts.from?.includes("://")) {
        throw new UserError(`--from ${opts.from}: dr rekey works on local archives only`, ExitCode.USAGE);
      }
      const req = await requestOf(opts);
      const g = globalsOf(cmd);
      const ws: Workspace | undefined = opts.all
        ? await openWorkspace(g.sdd)
        : await openWorkspace(g.sdd).catch(() => undefined);
      const outcomes = opts.all ? await rekeyAll(ws!, req) : [await rekeyArchive(opts.from!, req, ws)];
      for (const o of outcomes) if (o.audit_warning) out.warn(o.audit_warning);
      out.result({ ok: true, archives: outcomes }, () => {
        for (const o of outcomes) out.line(humanLine(o));
        if (opts.all && !outcomes.length) out.line("no encrypted archive in the catalogue");
      });
    });
}
