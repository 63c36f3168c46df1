/** `dr prune` on a WAL archive location: the plan (src/archive/prune.ts), its execution, its report. */
import { historyOf, listArchive, type ArchiveListing } from "../../../archive/catalog.js";
import { executeArchivePrune, planArchivePrune, type ArchivePrunePlan } from "../../../archive/prune.js";
import {
  formatWindow,
  generationWindow,
  windowJson,
  type GenerationWindow,
} from "../../../archive/window.js";
import type { RetentionPolicy } from "../../../storage/retention.js";
import type { BackupStore } from "../../../storage/store.js";
import type { Output } from "../../output.js";
import { shownOnHost } from "../../../workspace/shown-path.js";

/** Whether the location holds a WAL archive (a generation record, snapshot or segment). */
export async function archiveAt(store: BackupStore): Promise<ArchiveListing | undefined> {
  const listing = await listArchive(store);
  return listing.generations.length > 0 ? listing : undefined;
}

async function windows(store: BackupStore): Promise<GenerationWindow[]> {
  const out: GenerationWindow[] = [];
  for (const g of (await listArchive(store)).generations) out.push(await generationWindow(store, g));
  return out;
}

export async function pruneArchive(
  out: Output,
  store: BackupStore,
  listing: ArchiveListing,
  policy: RetentionPolicy,
  dryRun: boolean,
): Promise<void> {
  const plan = planArchivePrune(listing, policy);
  const deleted = dryRun ? 0 : await executeArchivePrune(store, plan);
  const after = dryRun ? [] : await windows(store);
  const result = {
    ok: true,
    kind: "wal-archive",
    root: store.root,
    dry_run: dryRun,
    ...plan,
    deleted_objects: deleted,
    windows_after: after.map(windowJson),
    foreign_ignored: listing.foreign,
  };
  // Each history as people read it: its workspace folder on its host (the records say which).
  const histories = new Map(
    listing.generations.flatMap((g) =>
      g.record ? [[historyOf(g.record), shownOnHost(g.record.host, g.record.workspace)]] : [],
    ),
  );
  const shownAfter = new Map(after.map((w) => [w.generation, formatWindow(w)]));
  out.result(result, () => describePlan(out, plan, dryRun, shownAfter, histories));
}

function describePlan(
  out: Output,
  plan: ArchivePrunePlan,
  dryRun: boolean,
  after: Map<string, string>,
  histories: Map<string, string>,
): void {
  const del = dryRun ? "would delete" : "delete";
  // Each history's rules apply apart (src/archive/prune.ts): with more than one, each is named.
  const named = new Set(plan.snapshots.map((s) => s.history)).size > 1;
  let history: string | null | undefined;
  for (const s of plan.snapshots) {
    if (named && s.history !== history)
      out.line(
        `history of ${s.history === null ? "the generations without a record" : (histories.get(s.history) ?? s.history)}:`,
      );
    history = s.history;
    const verb = s.action === "keep" ? "keep  " : del;
    out.line(`${named ? "  " : ""}${verb} ${s.key}  (${s.reasons.join("; ")})`);
  }
  for (const g of plan.generations) {
    const objects = g.deletes.length;
    if (g.action === "delete") {
      out.line(`${del} generation ${g.generation} whole: ${objects} object(s), no kept snapshot`);
    } else if (objects > 0) {
      out.line(
        `${del} ${g.segments_deleted} segment(s) (${g.bytes_deleted} bytes) of ${g.generation} ` +
          `before snapshot ${g.oldest_kept}, ${objects - g.segments_deleted} snapshot object(s)`,
      );
    }
    const window = after.get(g.generation);
    if (window) out.line(`window now ${window}`);
  }
  const kept = plan.snapshots.filter((s) => s.action === "keep").length;
  const total = plan.generations.reduce((n, g) => n + g.deletes.length, 0);
  out.line(
    `${kept} snapshot(s) kept, ${plan.snapshots.length - kept} ${dryRun ? "would be deleted" : "deleted"}; ` +
      `${total} object(s) ${dryRun ? "would be deleted" : "deleted"}`,
  );
}
