/** Prune a catalogue location by a retention policy (only our backups; foreign keys untouched). */
import { ExitCode, UserError } from "../errors/errors.js";
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
  /** Records whose backup was already gone, removed (or, with --dry-run, that would be). */
  orphan_records: string[];
}

/** A prune that failed part-way: `result` says what was deleted before the failure. */
export class PruneFailedError extends UserError {
  constructor(
    cause: UserError | Error,
    readonly result: PruneResult,
  ) {
    const deleted = result.decisions.filter((d) => d.deleted).map((d) => d.name);
    super(
      `${cause.message}; ` +
        (deleted.length ? `deleted before the failure: ${deleted.join(", ")}` : "nothing was deleted"),
      cause instanceof UserError ? cause.exitCode : ExitCode.REMOTE,
      {
        ...(cause instanceof UserError ? cause.details : {}),
        // Not `deleted`: a finished prune's --json gives that as a count.
        deleted_before_failure: deleted,
        orphan_records_removed: result.orphan_records,
      },
    );
  }
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
  const { entries, foreign, orphanRecords } = await listCatalogue(store);
  const { decisions, notIntact } = await decide(store, entries, policy);
  const out: PruneDecision[] = decisions.map((d) => ({
    name: d.item.name,
    created_at: d.item.created.toISOString(),
    verified: d.item.verified,
    action: d.keep ? "keep" : "delete",
    reasons: d.reasons,
    deleted: false,
  }));
  const result: PruneResult = {
    root: store.root,
    dry_run: Boolean(options.dryRun),
    decisions: out,
    kept: out.filter((d) => d.action === "keep").length,
    deleted: 0,
    foreign_ignored: foreign,
    not_intact: notIntact,
    orphan_records: options.dryRun ? orphanRecords : [],
  };
  if (options.dryRun) return result;
  try {
    for (const key of orphanRecords) {
      await store.delete(key);
      result.orphan_records.push(key);
    }
    for (const d of out) {
      if (d.action !== "delete") continue;
      // Gone once the archive is: a record left by a failure after it is an orphan the next prune removes.
      await deleteBackup(store, d.name, () => {
        d.deleted = true;
        result.deleted++;
      });
    }
  } catch (err) {
    throw new PruneFailedError(err instanceof Error ? err : new Error(String(err)), result);
  }
  return result;
}
