/**
 * `dr list --check`: what the audit chain says was written to the location (missing, replaced),
 * archives a removed recipient can still read (src/dr/recipient-check.ts), and with `--deep`
 * every archive read whole, decrypted with the keys given (src/dr/catalogue-content.ts).
 */
import path from "node:path";
import type { Command } from "../../../vendor/commander.js";
import { checkCatalogue, type CatalogueEntry, type CheckFinding } from "../../../storage/catalogue.js";
import { LocalStore } from "../../../storage/local-store.js";
import type { RekeyWatch } from "../../../dr/rekey-lock.js";
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

/** A backup a `dr rekey` held or changed while it was checked: nothing is known of it yet. */
type Rekeying = { status: "rekeying" };
type Finding = Omit<CheckFinding, "status"> & (Pick<CheckFinding, "status"> | Rekeying);
type Content = Omit<ContentFinding, "status"> & (Pick<ContentFinding, "status"> | Rekeying);

export interface ListCheck {
  findings: Finding[];
  removed: RemovedRecipientWarning[];
  content?: Content[];
}

/**
 * A finding of damage (missing, replaced, damaged) about a local backup that a `dr rekey` held,
 * or changed since `watches` began, may be about a healthy backup read halfway through the
 * rekey: it becomes `rekeying`, to be checked again, as `dr verify` answers exit 3, not 5.
 */
async function unlessRekeyed<F extends { name: string; status: string; detail: string }>(
  finding: F,
  watches: ReadonlyMap<string, RekeyWatch>,
  damage: readonly string[],
): Promise<F | (Omit<F, "status"> & Rekeying)> {
  const watch = watches.get(finding.name);
  if (!watch || !damage.includes(finding.status)) return finding;
  const busy = await watch.busy();
  return busy ? { ...finding, status: "rekeying", detail: busy.message } : finding;
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
  // Before the audit chain says what each backup should be (rekey-lock.ts says why).
  const watches = new Map<string, RekeyWatch>();
  if (store instanceof LocalStore) {
    const { watchForRekey } = await import("../../../dr/rekey-lock.js");
    for (const e of at.entries) watches.set(e.name, await watchForRekey(store.describe(e.name)));
  }
  const expected = await backupsFromAudit(ws, store.root);
  const findings: Finding[] = [];
  for (const f of await checkCatalogue(store, expected, { deep: at.deep }))
    findings.push(await unlessRekeyed(f, watches, ["missing", "replaced"]));
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
  const content: Content[] = [];
  const opened = await checkContents(
    store,
    at.entries.map((e) => e.name),
    {
      password,
      identities,
      fingerprintsOf: (name) => newest.get(store.describe(name))?.recipient_fingerprints,
      expectedOf: (name) => latest.get(name),
    },
  );
  for (const c of opened) content.push(await unlessRekeyed(c, watches, ["damaged"]));
  return { findings, removed, content };
}

/** What the failures of a check can be: damage only where archives were opened (--deep). */
export function failureWords(check: ListCheck): string {
  return check.content ? "missing, replaced or damaged" : "missing or replaced";
}

/** The backups a rekey held or changed while they were checked (unlessRekeyed). */
export function rekeyingOf(check: ListCheck): { name: string; detail: string }[] {
  return [...check.findings, ...(check.content ?? [])].filter((f) => f.status === "rekeying");
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
  const rekeying = new Set(rekeyingOf(check).map((f) => f.name)).size;
  out.line(
    failures > 0
      ? `check FAILED: ${failures} backup(s) ${failureWords(check)}`
      : rekeying > 0
        ? `check NOT DONE: ${rekeying} backup(s) being rekeyed; check again once the rekey has finished`
        : "check: every backup the audit chain recorded here is present and unchanged",
  );
}
