/**
 * Every backup is an audit event carrying its archive and manifest sha256, so that
 * `dr list --at LOCATION --check` can tell a backup that was deleted or replaced behind our
 * back: the chain is HMAC-signed, the location is not. `dr backup` writes `dr.backup`
 * (src/dr/audit-event.ts: off-site backups add the catalogue `root` and `name`, a plain
 * `--to FILE` has only its path); events named `backup_written` (with root and name) are read
 * too. This module only reads them.
 */
import path from "node:path";
import { asJsonObject } from "../json/object.js";
import { parseJson } from "../json/canonical.js";
import { listAuditFiles } from "../audit/files.js";
import { readLinesForward } from "../workspace/lines.js";
import type { Workspace } from "../workspace/layout.js";
import type { ExpectedBackup } from "./catalogue.js";
import { splitHashesOf } from "../dr/age/split-hash.js";

/** Also accepted (root and name in details). */
export const BACKUP_EVENT = "backup_written";
/** The event `dr backup` and `dr schedule` write. */
export const DR_BACKUP_EVENT = "dr.backup";
/** `dr rekey` wrote new bytes for a backup (details: root, name, sha256, size_bytes, replaces). */
export const DR_REKEY_EVENT = "dr.rekey";

/** `dr prune` / `dr schedule` deleted backups by the keep rules (details: root, deleted: names). */
export const DR_PRUNE_EVENT = "dr.prune";
/**
 * `dr restore` restored this workspace from a backup at a location (details: root, name, sha256,
 * size_bytes, gone: the names the restored chain expected there that were already gone).
 */
export const DR_RESTORE_EVENT = "dr.restore";

const WRITES = new Set([BACKUP_EVENT, DR_BACKUP_EVENT, DR_REKEY_EVENT, DR_RESTORE_EVENT]);
const EVENTS = new Set([...WRITES, DR_PRUNE_EVENT]);

/**
 * What the audit chain says was written under `root` (streamed, oldest first). A rekey is a new
 * write of its name; one that replaced another name (a `.enc` converted to `.age`) also ends
 * what was expected of the old name, and so does a prune that deleted it. A restore from the
 * location is the write its archive could not record of itself, and ends what was expected of
 * the names already gone then (src/dr/restore-event.ts).
 */
export async function backupsFromAudit(ws: Workspace, root: string): Promise<ExpectedBackup[]> {
  const out: ExpectedBackup[] = [];
  /** Per replaced or pruned name, how many expectations existed when it was. */
  const replaced = new Map<string, number>();
  for (const file of await listAuditFiles(ws.auditDir)) {
    for await (const line of readLinesForward(path.join(ws.auditDir, file))) {
      if (![...EVENTS].some((event) => line.text.includes(event))) continue;
      let entry;
      try {
        entry = asJsonObject(parseJson(line.text));
      } catch {
        continue; // a torn line: `audit verify` reports it
      }
      if (!entry || typeof entry.event_type !== "string" || !EVENTS.has(entry.event_type)) continue;
      const details = asJsonObject(entry.details);
      if (!details) continue;
      if (entry.event_type === DR_PRUNE_EVENT) {
        if (details.root !== root || !Array.isArray(details.deleted)) continue;
        for (const name of details.deleted) if (typeof name === "string") replaced.set(name, out.length);
        continue;
      }
      if (entry.event_type === DR_RESTORE_EVENT && details.root === root && Array.isArray(details.gone))
        for (const name of details.gone) if (typeof name === "string") replaced.set(name, out.length);
      // A header-only rekey of an `.age` archive records null and the header/payload hashes.
      const age = splitHashesOf(details);
      if (typeof details.sha256 !== "string" && !(details.sha256 === null && age)) continue;
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
        sha256: details.sha256 as string | null,
        ...(age ? { age } : {}),
        size_bytes: typeof size === "number" ? size : typeof size === "bigint" ? Number(size) : undefined,
        written_at: typeof entry.timestamp === "string" ? entry.timestamp : undefined,
      });
      if (typeof details.replaces === "string" && details.replaces !== name)
        replaced.set(details.replaces, out.length);
    }
  }
  return out.filter((e, i) => !(i < (replaced.get(e.name) ?? -1)));
}
