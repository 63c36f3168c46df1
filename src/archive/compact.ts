/**
 * Compaction of a WAL archive (docs/formats.md "Compaction"): runs of small consecutive segments
 * of one stream become one segment whose name and index prove the same continuity (byte range,
 * seq range, sha256, the hash before its first entry and of its last). The merged segment is
 * written, and read back through its index, before any small one is deleted, oldest first; so
 * a kill at any moment leaves a tiling of every stream, at worst with a merged segment overlapping
 * small ones it holds byte for byte, which restore, check and list take in either form (a byte
 * is applied once: each segment is applied from where the stream already ends). The next run
 * deletes such leftovers first.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { BackupStore } from "../storage/store.js";
import { LineCutter } from "./apply-segments.js";
import {
  readObject,
  readSegmentIndex,
  segmentMetadata,
  type ArchiveListing,
  type GenerationListing,
  type SegmentIndex,
  type StoredSegment,
} from "./catalog.js";
import { segmentKey } from "./names.js";
import { emptyEnd, type StreamEnd } from "./streams.js";

export interface CompactOptions {
  /** A merged segment grows up to this many bytes; segments this big or bigger stay as they are. */
  targetBytes: number;
  /** Called after each merged segment is stored and its small ones deleted. */
  onMerged?: (merged: MergedSegment) => void;
}

export interface MergedSegment {
  generation: string;
  stream: string;
  key: string;
  bytes: number;
  replaced: string[];
}

export interface CompactResult {
  merged: MergedSegment[];
  /** Small segments a merged one already held (left by an interrupted compaction), deleted. */
  leftovers: string[];
  /** Generations left alone, with why. */
  skipped: { generation: string; reason: string }[];
  segments_before: number;
  segments_after: number;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Segments another segment of the stream holds whole (nested in its byte range), with that holder. */
function redundant(list: StoredSegment[]): {
  chain: StoredSegment[];
  covered: { segment: StoredSegment; holder: StoredSegment }[];
} {
  const chain: StoredSegment[] = [];
  const covered: { segment: StoredSegment; holder: StoredSegment }[] = [];
  for (const s of list) {
    const holder = list.find(
      (o) => o !== s && o.from <= s.from && s.to <= o.to && o.to - o.from > s.to - s.from,
    );
    if (holder) covered.push({ segment: s, holder });
    else chain.push(s);
  }
  return { chain, covered };
}

/** Runs of consecutive small segments, cut into groups of at most `target` bytes (2 or more each). */
export function mergeGroups(chain: StoredSegment[], target: number): StoredSegment[][] {
  const groups: StoredSegment[][] = [];
  let run: StoredSegment[] = [];
  let bytes = 0;
  const close = () => {
    if (run.length >= 2) groups.push(run);
    run = [];
    bytes = 0;
  };
  for (const s of chain) {
    const prev = run[run.length - 1];
    const follows =
      prev !== undefined &&
      s.from === prev.to &&
      (s.firstSeq === undefined || (prev.lastSeq !== undefined && s.firstSeq === prev.lastSeq + 1));
    if (prev && (!follows || bytes + s.size > target)) close();
    if (s.size >= target) {
      close();
      continue;
    }
    run.push(s);
    bytes += s.size;
  }
  close();
  return groups;
}

/** Where the stream ends just before `s`, as far as checking its lines needs. */
function endBefore(stream: string, s: StoredSegment, ix: SegmentIndex): StreamEnd {
  if (s.firstSeq === undefined) return { ...emptyEnd(stream), length: s.from };
  return { length: s.from, tail_sha256: "", seq: s.firstSeq - 1, entry_hash: ix.prev_hash };
}

/** Reads a group, checks every piece against its index and every line's link, and stores the merge. */
async function mergeGroup(store: BackupStore, gen: string, stream: string, group: StoredSegment[]) {
  const parts: Buffer[] = [];
  const ixs: SegmentIndex[] = [];
  for (const s of group) {
    const ix = await readSegmentIndex(store, s.key);
    if (!ix)
      throw new Error(`${store.describe(s.key)}: listed, then gone (another compaction or prune running?)`);
    const data = await readObject(store, s.key);
    if (sha256(data) !== ix.sha256 || data.length !== s.to - s.from)
      throw new Error(
        `${store.describe(s.key)}: does not match its index or name; run dr archive-list --check`,
      );
    parts.push(data);
    ixs.push(ix);
  }
  const first = group[0]!;
  const last = group[group.length - 1]!;
  const bytes = Buffer.concat(parts);
  // The merge proves the same chain the pieces did: every line whole, every WAL entry linked.
  new LineCutter(stream, first.key, endBefore(stream, first, ixs[0]!), {
    atMs: Number.MAX_SAFE_INTEGER,
  }).take(bytes, last.to);
  const lastIx = ixs[ixs.length - 1]!;
  const times = ixs.map((i) => i.first_time).filter((t) => t > 0);
  const ix: SegmentIndex = {
    sha256: sha256(bytes),
    plain_sha256: sha256(bytes),
    // Each piece's capture instant held for the bytes up to it; the newest holds for them all.
    captured_at: Math.max(...ixs.map((i) => i.captured_at)),
    tail_sha256: lastIx.tail_sha256,
    first_time: times.length ? Math.min(...times) : 0,
    last_time: Math.max(...ixs.map((i) => i.last_time)),
    ...(ixs[0]!.prev_hash !== undefined ? { prev_hash: ixs[0]!.prev_hash, last_hash: lastIx.last_hash } : {}),
  };
  const key = segmentKey({
    generation: gen,
    stream,
    from: first.from,
    to: last.to,
    ...(first.firstSeq !== undefined ? { firstSeq: first.firstSeq, lastSeq: last.lastSeq } : {}),
  });
  await store.put(key, Readable.from([bytes]), { sha256: ix.sha256, metadata: segmentMetadata(ix) });
  const back = await readSegmentIndex(store, key);
  if (back?.sha256 !== ix.sha256)
    throw new Error(`${store.describe(key)}: not readable back after storing it`);
  return { key, bytes: bytes.length };
}

async function compactGeneration(
  store: BackupStore,
  g: GenerationListing,
  opts: CompactOptions,
  result: CompactResult,
): Promise<void> {
  for (const [stream, list] of g.segments) {
    const { chain, covered } = redundant(list);
    for (const { segment, holder } of covered.sort((a, b) => a.segment.from - b.segment.from)) {
      // Only once the segment that holds its bytes is there with its index.
      if (!(await readSegmentIndex(store, holder.key))) continue;
      await store.delete(segment.key);
      result.leftovers.push(segment.key);
    }
    for (const group of mergeGroups(chain, opts.targetBytes)) {
      const merged = await mergeGroup(store, g.generation, stream, group);
      for (const s of group) await store.delete(s.key);
      const m = { generation: g.generation, stream, ...merged, replaced: group.map((s) => s.key) };
      result.merged.push(m);
      opts.onMerged?.(m);
    }
  }
}

export async function compactArchive(
  store: BackupStore,
  listing: ArchiveListing,
  opts: CompactOptions,
): Promise<CompactResult> {
  const count = (l: ArchiveListing) =>
    l.generations.reduce((n, g) => n + [...g.segments.values()].reduce((m, s) => m + s.length, 0), 0);
  const result: CompactResult = {
    merged: [],
    leftovers: [],
    skipped: [],
    segments_before: count(listing),
    segments_after: 0,
  };
  for (const g of listing.generations) {
    if (g.record?.encrypted) {
      result.skipped.push({
        generation: g.generation,
        reason: "encrypted: compaction needs the password (not built yet)",
      });
      continue;
    }
    await compactGeneration(store, g, opts, result);
  }
  result.segments_after =
    result.segments_before -
    result.leftovers.length -
    result.merged.reduce((n, m) => n + m.replaced.length - 1, 0);
  return result;
}
