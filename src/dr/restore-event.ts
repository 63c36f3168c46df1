/**
 * The `dr.restore` audit event a restore of a catalogue backup appends to the restored
 * workspace. An archive is taken before its own `dr.backup` event and before the prune of the
 * same schedule run, so the chain it carries cannot say that it was written, nor what was
 * deleted after it was taken: the event says both for `dr list --check`
 * (src/storage/audit-record.ts). It ends the expectations the restored chain holds of backups
 * already gone at the restore, which the restore reports by name: whether retention or a hand
 * deleted them, only the lost history knew. Every backup present at the restore stays expected,
 * so a later disappearance is still reported missing.
 */
import { backupsFromAudit, DR_RESTORE_EVENT } from "../storage/audit-record.js";
import { parseBackupName } from "../storage/catalogue.js";
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import { recordAuditEvent } from "./audit-event.js";

/**
 * Appends the event for a restore of the catalogue backup `name` at `store` into `ws` (of any
 * other archive, nothing): the names it ended, and a warning when it could not be appended and
 * the check will fail for it.
 */
export async function recordRestoreEvent(
  ws: Workspace,
  from: { store: BackupStore; name: string },
  archive: { sha256: string; size_bytes: number },
  opts: { keyFile?: string } = {},
): Promise<{ gone: string[]; warning?: string }> {
  const { store, name } = from;
  // Anything else (`dr backup --to FILE`) is checked by its own path and never pruned.
  if (!parseBackupName(name)) return { gone: [] };
  const present = new Set((await store.list()).map((o) => o.key));
  const gone = [...new Set((await backupsFromAudit(ws, store.root)).map((e) => e.name))].filter(
    (n) => !present.has(n) && n !== name,
  );
  const audit = await recordAuditEvent(
    ws,
    {
      event_type: DR_RESTORE_EVENT,
      resource_type: "backup",
      resource_id: store.describe(name),
      details: { root: store.root, name, sha256: archive.sha256, size_bytes: archive.size_bytes, gone },
    },
    opts,
  );
  if (audit.recorded || gone.length === 0) return { gone: audit.recorded ? gone : [] };
  // Only the names gone make the check fail; the restored-from backup is merely `unrecorded`.
  return {
    gone: [],
    warning:
      `${audit.warning ?? "audit event dr.restore not recorded"}; \`dr list --at ${store.root} --check\` ` +
      `will report ${gone.length} backup(s) gone before the restore missing: ${gone.join(", ")}`,
  };
}
