/**
 * Retention of a WAL archive (docs/formats.md "Retention"): the backups' keep rules pick base
 * snapshots; a kept point is any instant from a kept snapshot's completion to the next kept
 * snapshot (or the generation's end). So a generation keeps every byte after its oldest kept
 * snapshot, loses what only older snapshots needed, and a generation with no kept snapshot goes
 * whole. Deletion order keeps every kept point restorable if the process dies at any moment:
 * an old snapshot's index goes before its archive (the window moves forward first), segments go
 * oldest first and only once no older snapshot is indexed, a generation's record goes last, and
 * the snapshot a kept window starts from is never touched.
 *
 * The rules apply to each history apart, as restic's apply to each host and path: the generations
 * of one workspace (host and folder, from their records). A workspace restored into another
 * folder and archived to the same store is another history, whose newer snapshots must not count
 * against the first one's: `--keep-last 1` keeps the newest snapshot of each.
 */
import { applyRetention, type RetentionItem, type RetentionPolicy } from "../storage/retention.js";
import type { BackupStore } from "../storage/store.js";
import {
  historyOf,
  type ArchiveListing,
  type DamagedIndex,
  type GenerationListing,
  type SnapshotIndex,
  type StoredSegment,
} from "./catalog.js";
import { generationKey, parseArchiveKey, snapshotIndexKey } from "./names.js";

export interface SnapshotDecision {
  generation: string;
  /** The history it belongs to: `host:workspace` of its generation's record (null: no record). */
  history: string | null;
  number: number;
  key: string;
  created_at: string;
  action: "keep" | "delete";
  reasons: string[];
}

export interface GenerationPlan {
  generation: string;
  action: "keep" | "delete";
  /** The oldest kept snapshot: the generation's window starts at its completion. */
  oldest_kept: number | null;
  /** Keys in the order they are deleted. */
  deletes: string[];
  segments_deleted: number;
  bytes_deleted: number;
}

export interface ArchivePrunePlan {
  snapshots: SnapshotDecision[];
  generations: GenerationPlan[];
}

interface SnapshotItem extends RetentionItem {
  snapshot: SnapshotIndex;
}

/** The history a generation belongs to (generations without a record form one). */
const historyOfGeneration = (g: GenerationListing): string | null =>
  g.record?.host !== undefined && g.record.workspace !== undefined ? historyOf(g.record) : null;

/** The generations of each history, in the listing's order (oldest first), in order of first appearance. */
function histories(listing: ArchiveListing): GenerationListing[][] {
  const groups = new Map<string | null, GenerationListing[]>();
  for (const g of listing.generations) {
    const h = historyOfGeneration(g);
    groups.set(h, [...(groups.get(h) ?? []), g]);
  }
  return [...groups.values()];
}

/**
 * Which snapshots of one history the rules keep (newest first), with the archive's own addition
 * for --keep-within.
 */
function decideSnapshots(generations: GenerationListing[], policy: RetentionPolicy): SnapshotDecision[] {
  const items: SnapshotItem[] = generations.flatMap((g) =>
    g.snapshots.map((s) => ({
      name: s.key,
      created: new Date(s.completed_at),
      // Every indexed snapshot is complete: the newest one is never deleted, whatever the rules.
      verified: true,
      snapshot: s,
    })),
  );
  if (items.length === 0) return [];
  const decisions = applyRetention(items, policy);
  if (policy.within) {
    // A point `within` before the newest snapshot restores from the snapshot at or before it.
    const since = decisions[0]!.item.created.getTime() - policy.within;
    const start = decisions.find((d) => d.item.created.getTime() < since);
    if (start && !start.keep) {
      start.keep = true;
      start.reasons = ["starts the window of the --keep-within period"];
    }
  }
  const history = historyOfGeneration(generations[0]!);
  return decisions.map((d) => ({
    generation: d.item.snapshot.generation,
    history,
    number: d.item.snapshot.number,
    key: d.item.snapshot.key,
    created_at: d.item.created.toISOString(),
    action: d.keep ? "keep" : "delete",
    reasons: d.reasons,
  }));
}

/** A snapshot's archive and index, index first: the window never starts at a snapshot being deleted. */
const snapshotKeys = (s: SnapshotIndex): string[] => [snapshotIndexKey(s.generation, s.number), s.key];

/** A damaged index and its snapshot's archive, index first (as snapshotKeys). */
const damagedKeys = (d: DamagedIndex): string[] => [d.key, ...(d.archive ? [d.archive] : [])];

/** Segments no kept point needs: wholly before where the oldest kept snapshot holds their stream. */
function unneededSegments(g: GenerationListing, oldestKept: SnapshotIndex): StoredSegment[] {
  const out: StoredSegment[] = [];
  for (const [stream, list] of g.segments) {
    const start = oldestKept.streams[stream]?.length ?? 0;
    out.push(...list.filter((s) => s.to <= start));
  }
  return out.sort((a, b) => a.to - b.to || (a.key < b.key ? -1 : 1));
}

function planGeneration(g: GenerationListing, kept: Set<string>, newest: boolean): GenerationPlan {
  const keptSnaps = g.snapshots.filter((s) => kept.has(s.key));
  const oldest = keptSnaps[0];
  const allSegments = [...g.segments.values()].flat();
  if (!oldest) {
    // Nothing kept: the whole generation, record last (a newest one still without its first
    // snapshot is an archiver starting up, and is left alone).
    if (newest && g.snapshots.length === 0) return keepAll(g);
    const segs = [...allSegments].sort((a, b) => a.to - b.to || (a.key < b.key ? -1 : 1));
    return {
      generation: g.generation,
      action: "delete",
      oldest_kept: null,
      deletes: [
        ...g.snapshots.flatMap(snapshotKeys),
        ...g.unindexed,
        ...g.damaged.flatMap(damagedKeys),
        ...g.refused.map((r) => r.key),
        ...segs.map((s) => s.key),
        ...(g.recordProblem === "missing" ? [] : [generationKey(g.generation)]),
      ],
      segments_deleted: segs.length,
      bytes_deleted: segs.reduce((n, s) => n + s.size, 0),
    };
  }
  const older = g.snapshots.filter((s) => s.number < oldest.number);
  const between = g.snapshots.filter((s) => s.number > oldest.number && !kept.has(s.key));
  // An archive without its index numbered below an indexed snapshot is a dead leftover (an
  // interrupted snapshot or prune), not one in progress: snapshots are taken in number order.
  const newestIndexed = g.snapshots[g.snapshots.length - 1]!.number;
  const leftovers = [
    ...g.unindexed.filter((k) => {
      const p = parseArchiveKey(k);
      return p?.kind === "snapshot" && p.number < newestIndexed;
    }),
    ...g.damaged.filter((d) => d.number < oldest.number).flatMap(damagedKeys),
  ];
  const segs = unneededSegments(g, oldest);
  return {
    generation: g.generation,
    action: "keep",
    oldest_kept: oldest.number,
    deletes: [
      ...older.flatMap(snapshotKeys),
      ...leftovers,
      ...segs.map((s) => s.key),
      ...between.flatMap(snapshotKeys),
    ],
    segments_deleted: segs.length,
    bytes_deleted: segs.reduce((n, s) => n + s.size, 0),
  };
}

const keepAll = (g: GenerationListing): GenerationPlan => ({
  generation: g.generation,
  action: "keep",
  oldest_kept: null,
  deletes: [],
  segments_deleted: 0,
  bytes_deleted: 0,
});

export function planArchivePrune(listing: ArchiveListing, policy: RetentionPolicy): ArchivePrunePlan {
  const groups = histories(listing);
  const snapshots = groups.flatMap((gens) => decideSnapshots(gens, policy));
  const kept = new Set(snapshots.filter((s) => s.action === "keep").map((s) => s.key));
  // The newest generation of each history may be an archiver starting up (planGeneration).
  const newest = new Set(groups.map((gens) => gens[gens.length - 1]!));
  return {
    snapshots,
    generations: listing.generations.map((g) => planGeneration(g, kept, newest.has(g))),
  };
}

/** Deletes what the plan says, generation by generation, in its order; returns how many keys went. */
export async function executeArchivePrune(
  store: BackupStore,
  plan: ArchivePrunePlan,
  onDelete?: (key: string) => void,
): Promise<number> {
  let n = 0;
  for (const g of plan.generations) {
    for (const key of g.deletes) {
      await store.delete(key);
      onDelete?.(key);
      n++;
    }
  }
  return n;
}
