/**
 * `dr list --check`: what the audit chain says was written to the location (missing, replaced),
 * archives a removed recipient can still read (src/dr/recipient-check.ts), and with `--deep`
 * every archive read whole, decrypted with the keys given (src/dr/catalogue-content.ts).
 */
import path from "node:path";
import type { Command } from "../../../vendor/commander.js";
import { checkCatalogue, type CatalogueEntry } from "../../../storage/catalogue.js";
import { backupsFromAudit } from "../../../storage/audit-record.js";
import type { BackupStore } from "../../../storage/store.js";
import { readBackupLog, type BackupLogRow } from "../../../dr/backup-log.js";
import { checkContents, type ContentFinding } from "../../../dr/catalogue-content.js";
import { archivesReadableByRemoved, type RemovedRecipientWarning } from "../../../dr/recipient-check.js";
import { loadedConfigOf } from "../../../config/apply.js";
import { resolveAgainst } from "../../../config/settings.js";
import type { Workspace } from "../../../workspace/layout.js";
import { resolveIdentities, resolveRecipients } from "../../age-keys.js";
import { resolveDecryptPassword, type PasswordFlags } from "../../password.js";
import type { Output } from "../../output.js";

export interface ListCheck {
  findings: Awaited<ReturnType<typeof checkCatalogue>>;
  removed: RemovedRecipientWarning[];
  content?: ContentFinding[];
}

/** The configuration's recipients (backup.recipients and recipients_file), when it names any. */
async function configuredRecipients(cmd: Command): Promise<string[] | undefined> {
  const { file, config } = loadedConfigOf(cmd);
  const b = config.backup;
  if (!b?.recipients && !b?.recipients_file) return undefined;
  const base = path.dirname(file ?? ".");
  return resolveRecipients({
    recipient: b.recipients,
    recipientsFile: resolveAgainst(base, b.recipients_file),
  });
}

/** Every row of the workspace's catalogue, in order. */
async function allRows(ws: Workspace): Promise<BackupLogRow[]> {
  const rows: BackupLogRow[] = [];
  for await (const row of readBackupLog(ws)) rows.push(row);
  return rows;
}

export async function runListCheck(
  cmd: Command,
  out: Output,
  at: {
    store: BackupStore;
    entries: CatalogueEntry[];
    ws: Workspace;
    newest: ReadonlyMap<string, BackupLogRow>;
    deep?: boolean;
    keys: PasswordFlags & { identityFile?: string };
  },
): Promise<ListCheck> {
  const { store, ws, newest } = at;
  const expected = await backupsFromAudit(ws, store.root);
  const findings = await checkCatalogue(store, expected, { deep: at.deep });
  const locations = at.entries.map((e) => store.describe(e.name));
  const removed = archivesReadableByRemoved(
    await allRows(ws),
    newest,
    locations,
    await configuredRecipients(cmd),
  );
  if (!at.deep) return { findings, removed };
  // The keys are read only when they are used: --deep opens every archive.
  const latest = new Map(expected.map((e) => [e.name, e]));
  const { password, warnings } = await resolveDecryptPassword(at.keys, false);
  for (const w of warnings) out.warn(w);
  const identities = await resolveIdentities(at.keys.identityFile);
  const content = await checkContents(
    store,
    at.entries.map((e) => e.name),
    {
      password,
      identities,
      fingerprintsOf: (name) => newest.get(store.describe(name))?.recipient_fingerprints,
      expectedOf: (name) => latest.get(name),
    },
  );
  return { findings, removed, content };
}

/** What the failures of a check can be: damage only where archives were opened (--deep). */
export function failureWords(check: ListCheck): string {
  return check.content ? "missing, replaced or damaged" : "missing or replaced";
}

/** The human lines of a check. */
export function printListCheck(out: Output, check: ListCheck, failures: number): void {
  for (const f of check.findings) out.line(`${f.status.padEnd(10)} ${f.name}: ${f.detail}`);
  for (const c of check.content ?? []) out.line(`${`content ${c.status}`.padEnd(20)} ${c.name}: ${c.detail}`);
  const notOpened = (check.content ?? []).filter((c) => c.status === "not-opened");
  const opened = (check.content ?? []).length - notOpened.length;
  const wrong = notOpened.filter((c) => c.key === "wrong").length;
  const why =
    wrong === 0
      ? "no key for them"
      : wrong === notOpened.length
        ? "the keys given do not open them"
        : `${notOpened.length - wrong} with no key for them, ${wrong} that the keys given do not open`;
  if (notOpened.length > 0)
    out.line(
      `${notOpened.length} archive(s) not opened deeply (${why})${opened > 0 ? `; the other ${opened} were` : ""}`,
    );
  for (const r of check.removed)
    out.line(
      `WARNING    ${path.basename(r.location)} is still readable by removed recipient ${r.fingerprint} (${r.reason}); ` +
        `rotate it: bernstein dr rekey --from ${r.location} --remove-recipient <that recipient>`,
    );
  out.line(
    failures === 0
      ? "check: every backup the audit chain recorded here is present and unchanged"
      : `check FAILED: ${failures} backup(s) ${failureWords(check)}`,
  );
}
