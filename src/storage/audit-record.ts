/**
 * Every off-site backup is an audit event (`backup_written`) carrying its archive and manifest
 * sha256, so that `dr list --at LOCATION --check` can tell a backup that was deleted or
 * replaced behind our back: the chain is HMAC-signed, the location is not.
 */
import { asJsonObject } from "../json/object.js";
import { parseJson } from "../json/canonical.js";
import { AuditLog, listAuditFiles } from "../audit/log.js";
import { loadAuditKey } from "../audit/key.js";
import { acquireLock } from "../workspace/lock.js";
import { readLinesForward } from "../workspace/lines.js";
import type { Workspace } from "../workspace/layout.js";
import path from "node:path";
import type { ExpectedBackup } from "./catalogue.js";
import type { OffsiteBackupResult } from "./offsite.js";

export const BACKUP_EVENT = "backup_written";

/**
 * Appends the event. The audit chain has one writer per workspace: when a live orchestrator
 * holds the workspace lock we do not write beside it (that would fork the chain) and say so.
 * Returns a warning, or undefined when the event was written.
 */
export async function recordBackupEvent(
  ws: Workspace,
  result: OffsiteBackupResult,
  options: { keyFile?: string; lockHeld?: boolean } = {},
): Promise<string | undefined> {
  let release: (() => Promise<void>) | undefined;
  if (!options.lockHeld) {
    try {
      release = (await acquireLock(ws, "dr backup (audit event)")).release;
    } catch (err) {
      return `audit event not written (${(err as Error).message}); the backup itself is complete`;
    }
  }
  try {
    const key = await loadAuditKey({ keyFile: options.keyFile, create: true });
    const log = await AuditLog.open(ws, key);
    await log.append({
      event_type: BACKUP_EVENT,
      actor: "bernstein",
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
  } finally {
    await release?.();
  }
}

/** What the audit chain says was written under `root` (streamed, oldest first). */
export async function backupsFromAudit(ws: Workspace, root: string): Promise<ExpectedBackup[]> {
  const out: ExpectedBackup[] = [];
  for (const name of await listAuditFiles(ws.auditDir)) {
    for await (const line of readLinesForward(path.join(ws.auditDir, name))) {
      if (!line.text.includes(BACKUP_EVENT)) continue;
      let entry;
      try {
        entry = asJsonObject(parseJson(line.text));
      } catch {
        continue; // a torn line: `audit verify` reports it
      }
      const details = asJsonObject(entry?.details);
      if (entry?.event_type !== BACKUP_EVENT || !details || details.root !== root) continue;
      if (typeof details.name !== "string" || typeof details.sha256 !== "string") continue;
      const size = details.size_bytes;
      out.push({
        name: details.name,
        sha256: details.sha256,
        size_bytes: typeof size === "number" ? size : typeof size === "bigint" ? Number(size) : undefined,
        written_at: typeof entry.timestamp === "string" ? entry.timestamp : undefined,
      });
    }
  }
  return out;
}
