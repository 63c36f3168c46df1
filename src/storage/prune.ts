/** Prune a catalogue location by a retention policy (only our backups; foreign keys untouched). */
import { deleteBackup, listCatalogue, type CatalogueEntry } from "./catalogue.js";
import { applyRetention, type RetentionPolicy } from "./retention.js";
import type { BackupStore } from "./store.js";

export interface PruneDecision {
  name: string;
  created_at: string;
  verified: boolean;
  action: "keep" | "delete";
  reasons: string[];
  deleted: boolean;
}

export interface PruneResult {
  root: string;
  dry_run: boolean;
  decisions: PruneDecision[];
  kept: number;
  deleted: number;
  foreign_ignored: string[];
}

export async function pruneLocation(
  store: BackupStore,
  policy: RetentionPolicy,
  options: { dryRun?: boolean } = {},
): Promise<PruneResult> {
  const { entries, foreign } = await listCatalogue(store);
  const decisions = applyRetention<CatalogueEntry>(entries, policy);
  const out: PruneDecision[] = [];
  for (const d of decisions) {
    let deleted = false;
    if (!d.keep && !options.dryRun) {
      await deleteBackup(store, d.item.name);
      deleted = true;
    }
    out.push({
      name: d.item.name,
      created_at: d.item.created.toISOString(),
      verified: d.item.verified,
      action: d.keep ? "keep" : "delete",
      reasons: d.reasons,
      deleted,
    });
  }
  return {
    root: store.root,
    dry_run: Boolean(options.dryRun),
    decisions: out,
    kept: out.filter((d) => d.action === "keep").length,
    deleted: out.filter((d) => d.deleted).length,
    foreign_ignored: foreign,
  };
}
