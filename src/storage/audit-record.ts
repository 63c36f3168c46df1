/**
 * Every backup is an audit event carrying its archive and manifest sha256, so that
 * `dr list --at LOCATION --check` can tell a backup that was deleted or replaced behind our
 * back: the chain is HMAC-signed, the location is not. Off-site backups write `backup_written`
 * (with the catalogue root and name); a plain `dr backup --to FILE` writes `dr.backup`
 * (src/dr/audit-event.ts) with the file's path; the check reads both.
 */
import path from "node:path";
import { asJsonObject } from "../json/object.js";
import { parseJson } from "../json/canonical.js";
import { AuditLog, listAuditFiles } from "../audit/log.js";
import { loadAuditKey } from "../audit/key.js";
import { acquireLock } from "../workspace/lock.js";
import { readLinesForward } from "../workspace/lines.js";
import type { Workspace } from "../workspace/layout.js";
import type { ExpectedBackup } from "./catalogue.js";
import type { OffsiteBackupResult } from "./offsite.js";

/** The event of an off-site backup. */
export const BACKUP_EVENT = "backup_written";
/** The event of a plain `dr backup --to FILE`. */
export const DR_BACKUP_EVENT = "dr.backup";

/**
 * Appends the `backup_written` event. The audit chain has one writer per workspace: when a live
 * process holds the workspace lock we do not write beside it (that would fork the chain) and
 * return a warning instead; undefined when the event was written.
 */
export async function recordBackupEvent(
  ws: Workspace,
  result: OffsiteBackupResult,
  options: { keyFile?: string } = {},
): Promise<string | undefined> {
  let lock;
  try {
    lock = await acquireLock(ws, "bernstein dr backup (audit event)");
  } catch (err) {
    return `audit event ${BACKUP_EVENT} not recorded: ${(err as Error).message}; the backup itself is complete`;
  }
  try {
    const key = await loadAuditKey({ keyFile: options.keyFile, create: true });
    const log = await AuditLog.open(ws, key);
    await log.append({
      event_type: BACKUP_EVENT,
      actor: "dr",
      resource_type: "backup",
      resource_id: result.location,
      details: {
        root: result.root,
        name: result.name,
        sha256: result.produced.sha256,
        manifest_sha256: result.produced.manifest_sha256,
        size_bytes: result.produced.size_bytes,
        file_count: result.produced.file_count,
        encrypted: result.produced.encrypted,
        remote: result.remote,
      },
    });
    return undefined;
  } catch (err) {
    return `audit event ${BACKUP_EVENT} not recorded: ${(err as Error).message}`;
  } finally {
    await lock.release();
  }
}

/** What the audit chain says was written under `root` (streamed, oldest first). */
export async function backupsFromAudit(ws: Workspace, root: string): Promise<ExpectedBackup[]> {
  const out: ExpectedBackup[] = [];
  for (const file of await listAuditFiles(ws.auditDir)) {
    for await (const line of readLinesForward(path.join(ws.auditDir, file))) {
      if (!line.text.includes(BACKUP_EVENT) && !line.text.includes(DR_BACKUP_EVENT)) continue;
      let entry;
      try {
        entry = asJsonObject(parseJson(line.text));
      } catch {
        continue; // a torn line: `audit verify` reports it
      }
      if (!entry || (entry.event_type !== BACKUP_EVENT && entry.event_type !== DR_BACKUP_EVENT)) continue;
      const details = asJsonObject(entry.details);
      if (!details || typeof details.sha256 !== "string") continue;
      // Off-site backups say their root and name; a plain `dr backup --to DIR/<name>` only its path.
      const resource = typeof entry.resource_id === "string" ? entry.resource_id : "";
      const name =
        typeof details.name === "string" && details.root === root
          ? details.name
          : details.root === undefined && path.dirname(resource) === root
            ? path.basename(resource)
            : undefined;
      if (name === undefined) continue;
      const size = details.size_bytes;
      out.push({
        name,
        sha256: details.sha256,
        size_bytes: typeof size === "number" ? size : typeof size === "bigint" ? Number(size) : undefined,
        written_at: typeof entry.timestamp === "string" ? entry.timestamp : undefined,
      });
    }
  }
  return out;
}
