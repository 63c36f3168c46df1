/**
 * Which archives a removed recipient can still read, from the catalogue (`runs/backups.jsonl`).
 *
 * "Removed" means: when the configuration names recipients, any recipient not among them (the
 * configuration is the current set: a key taken out of it should no longer open any archive);
 * without configured recipients, any recipient a `dr rekey` took out of an archive (a rekey row
 * whose set lacks one the row before it had). An archive still readable by one is the newest
 * row of its location listing that recipient's fingerprint.
 */
import type { BackupLogRow } from "./backup-log.js";
import { recipientFingerprint } from "./age/keys.js";

export interface RemovedRecipientWarning {
  location: string;
  fingerprint: string;
  /** Why the recipient counts as removed. */
  reason: string;
}

/** Fingerprints a rekey took out, with the archive it took them out of. */
function removedByRekey(rows: readonly BackupLogRow[]): Map<string, string> {
  const removed = new Map<string, string>();
  const previous = new Map<string, BackupLogRow>();
  for (const row of rows) {
    const before = previous.get(row.location);
    if (row.rekeyed_from !== undefined && before?.recipient_fingerprints) {
      const now = new Set(row.recipient_fingerprints ?? []);
      for (const fp of before.recipient_fingerprints) if (!now.has(fp)) removed.set(fp, row.location);
    }
    previous.set(row.location, row);
  }
  return removed;
}

/**
 * The archives among `locations` (newest row each) still readable by a removed recipient.
 * `newest`: the newest row of each location (rekey.ts's newestRows); `configured`: the
 * configuration's recipients, when it names any.
 */
export function archivesReadableByRemoved(
  rows: readonly BackupLogRow[],
  newest: ReadonlyMap<string, BackupLogRow>,
  locations: readonly string[],
  configured: readonly string[] | undefined,
): RemovedRecipientWarning[] {
  const current = configured?.length ? new Set(configured.map(recipientFingerprint)) : undefined;
  const rekeyed = current ? undefined : removedByRekey(rows);
  const warnings: RemovedRecipientWarning[] = [];
  for (const location of locations) {
    for (const fp of newest.get(location)?.recipient_fingerprints ?? []) {
      if (current && !current.has(fp))
        warnings.push({ location, fingerprint: fp, reason: "not among the configuration's recipients" });
      else if (rekeyed?.has(fp))
        warnings.push({ location, fingerprint: fp, reason: `removed by dr rekey of ${rekeyed.get(fp)}` });
    }
  }
  return warnings;
}
