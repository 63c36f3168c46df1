/** Prune a catalogue location by a retention policy (only our backups; foreign keys untouched). */
import { deleteBackup, listCatalogue, proveIntact, type CatalogueEntry } from "./catalogue.js";
import { applyRetention, type RetentionDecision, type RetentionPolicy } from "./retention.js";
import type { BackupStore } from "./store.js";

export interface PruneDecision {
  name: string;
  created_at: string;
  verified: boolean;
  action: "keep" | "delete";
  reasons: string[];
  deleted: boolean;
}

/** A backup whose record says verified but whose bytes no longer match it. */
export interface NotIntact {
  name: string;
  detail: string;
}

export interface PruneResult {
  root: string;
  dry_run: boolean;
  decisions: PruneDecision[];
  kept: number;
  deleted: number;
  foreign_ignored: string[];
  /** Checked as the newest verified backup and found not to match its record: not counted as verified. */
  not_intact: NotIntact[];
}

/**
 * The rules' decisions, with the backup they keep as the newest verified one proved intact. The
 * record's verified_at says the bytes matched once; bit rot or a hand since then would make the
 * rules delete every good copy and keep a corrupt one. So only that one backup is hashed (per
 * failure, the next older verified one): bounded cost, and the newest intact backup is kept.
 */
async function decide(
  store: BackupStore,
  entries: CatalogueEntry[],
  policy: RetentionPolicy,
): Promise<{ decisions: RetentionDecision<CatalogueEntry>[]; notIntact: NotIntact[] }> {
  const items = entries.map((e) => ({ ...e }));
  const notIntact: NotIntact[] = [];
  for (;;) {
    const decisions = applyRetention<CatalogueEntry>(items, policy);
    // Nothing deleted: nothing rests on the proof.
    if (decisions.every((d) => d.keep)) return { decisions, notIntact };
    const newest = decisions.find((d) => d.item.verified);
    if (!newest) return { decisions, notIntact };
    const finding = await proveIntact(store, newest.item);
    if (finding.status === "ok") return { decisions, notIntact };
    newest.item.verified = false;
    notIntact.push({ name: newest.item.name, detail: `${finding.status}: ${finding.detail}` });
  }
}

export async function pruneLocation(
  store: BackupStore,
  policy: RetentionPolicy,
  options: { dryRun?: boolean } = {},
): Promise<PruneResult> {
  const { entries, foreign } = await listCatalogue(store);
  const { decisions, notIntact } = await decide(store, entries, policy);
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
    not_intact: notIntact,
  };
}
