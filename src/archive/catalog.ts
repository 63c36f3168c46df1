/**
 * What an archive location holds, read from one listing plus the small JSON records
 * (generation records and snapshot indexes): never a payload.
 */
import { Readable } from "node:stream";
import { ExitCode, UserError } from "../errors/errors.js";
import type { BackupStore } from "../storage/store.js";
import type { WalError } from "../wal/chain.js";
import { parseArchiveKey, type SegmentName } from "./names.js";
import type { GenerationEncryption } from "./sealing.js";
import type { StreamEnd } from "./streams.js";

export const GENERATION_FORMAT = "bernstein-archive-generation/1";
export const SNAPSHOT_FORMAT = "bernstein-archive-snapshot/1";

export interface GenerationRecord {
  format: typeof GENERATION_FORMAT;
  generation: string;
  created_at: string;
  host: string;
  workspace: string;
  previous: string | null;
  cause: string;
  encrypted: boolean;
  /** Encrypted generations only: the key's parameters (sealing.ts, docs/formats.md). */
  encryption?: GenerationEncryption;
  /**
   * How its segments are compressed (segment-codec.ts: "br", or "gzip" in older generations);
   * absent: they are not. A string: a record may come from a newer version.
   */
  compression?: string;
}

/**
 * The history a generation belongs to: the workspace it archives, `host:folder`. Generations of
 * different workspaces in one archive are different histories (prune, restore's choice of one).
 */
export const historyOf = (r: Pick<GenerationRecord, "host" | "workspace">): string =>
  `${r.host}:${r.workspace}`;

export interface SnapshotIndex {
  format: typeof SNAPSHOT_FORMAT;
  generation: string;
  number: number;
  key: string;
  sha256: string;
  size_bytes: number;
  started_at: number;
  completed_at: number;
  streams: Record<string, StreamEnd>;
  /**
   * The WAL breaks the snapshot holds as found (its manifest's `wal_breaks`): the workspace was
   * damaged when it was taken. Absent when intact, and in indexes written before it was kept.
   */
  wal_breaks?: WalError[];
}

export interface StoredSegment extends SegmentName {
  key: string;
  size: number;
}

export interface GenerationListing {
  generation: string;
  record?: GenerationRecord;
  snapshots: SnapshotIndex[];
  /** Snapshot archives whose index is missing (an interrupted snapshot, or a lost index). */
  unindexed: string[];
  /** Per stream, sorted by `from`. */
  segments: Map<string, StoredSegment[]>;
}

export interface ArchiveListing {
  generations: GenerationListing[];
  foreign: string[];
}

export async function putJson(store: BackupStore, key: string, value: unknown): Promise<void> {
  await store.put(key, Readable.from([Buffer.from(JSON.stringify(value, null, 2) + "\n")]));
}

export async function readObject(store: BackupStore, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of await store.get(key)) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

export async function getJson<T>(store: BackupStore, key: string): Promise<T> {
  const bytes = await readObject(store, key);
  try {
    return JSON.parse(bytes.toString("utf8")) as T;
  } catch {
    throw new UserError(`${store.describe(key)}: not valid JSON`, ExitCode.CORRUPT);
  }
}

/**
 * Adds a listed segment object to its generation's listing (unsorted until sortSegments). A
 * listing holds every segment of the archive, so each is one small object of a fixed shape whose
 * generation and stream are the strings the listing already holds: a spread of the parsed name
 * made a dictionary-mode object of about 400 bytes per segment.
 */
export function addSegment(
  g: GenerationListing,
  name: SegmentName,
  obj: { key: string; size: number },
): void {
  let list = g.segments.get(name.stream);
  if (!list) g.segments.set(name.stream, (list = []));
  const stream = list[0]?.stream ?? name.stream;
  const { from, to, firstSeq, lastSeq } = name;
  const { key, size } = obj;
  list.push(
    firstSeq !== undefined
      ? { generation: g.generation, stream, from, to, firstSeq, lastSeq, key, size }
      : { generation: g.generation, stream, from, to, key, size },
  );
}

/** Each stream's segments by `from`, then `to` (the order every reader takes them in). */
export function sortSegments(g: GenerationListing): void {
  for (const list of g.segments.values()) list.sort((a, b) => a.from - b.from || a.to - b.to);
}

/** The archive at `store`: every generation (oldest first) with its records and segment names. */
export async function listArchive(store: BackupStore): Promise<ArchiveListing> {
  const byGen = new Map<string, GenerationListing>();
  const foreign: string[] = [];
  const gen = (id: string): GenerationListing => {
    let g = byGen.get(id);
    if (!g) byGen.set(id, (g = { generation: id, snapshots: [], unindexed: [], segments: new Map() }));
    return g;
  };
  const snapshotKeys = new Map<string, string>();
  const indexKeys: { gen: string; key: string; number: number }[] = [];
  for (const obj of await store.list("")) {
    const k = parseArchiveKey(obj.key);
    if (!k) foreign.push(obj.key);
    else if (k.kind === "generation") gen(k.generation);
    else if (k.kind === "snapshot") snapshotKeys.set(`${k.generation}/${k.number}`, obj.key);
    else if (k.kind === "snapshot-index")
      indexKeys.push({ gen: k.generation, key: obj.key, number: k.number });
    else addSegment(gen(k.generation), k, obj);
  }
  for (const g of byGen.values()) {
    g.record = await getJson<GenerationRecord>(store, `gen-${g.generation}.json`).catch(() => undefined);
  }
  for (const ix of indexKeys) {
    const idx = await getJson<SnapshotIndex>(store, ix.key);
    gen(ix.gen).snapshots.push(idx);
    snapshotKeys.delete(`${ix.gen}/${ix.number}`);
  }
  for (const [id, key] of snapshotKeys) gen(id.split("/")[0]!).unindexed.push(key);
  for (const g of byGen.values()) {
    g.snapshots.sort((a, b) => a.number - b.number);
    sortSegments(g);
  }
  const generations = [...byGen.values()].sort((a, b) => (a.generation < b.generation ? -1 : 1));
  return { generations, foreign };
}

/** Segment metadata as the shipper wrote it (docs/formats.md "Segment index"). */
export interface SegmentIndex {
  sha256: string;
  /**
   * Segments stored as they are only (a compressed one's sha256 fixes its plaintext, a sealed one is
   * authenticated by its seal).
   */
  plain_sha256?: string;
  captured_at: number;
  tail_sha256: string;
  first_time: number;
  last_time: number;
  prev_hash?: string;
  last_hash?: string;
}

export function segmentMetadata(ix: SegmentIndex): Record<string, string> {
  const out: Record<string, string> = {};
  // Hyphens, not underscores: some HTTP stacks drop headers with "_" in their names.
  for (const [k, v] of Object.entries(ix))
    if (v !== undefined && k !== "sha256") out[k.replace(/_/g, "-")] = String(v);
  return out;
}

export async function readSegmentIndex(store: BackupStore, key: string): Promise<SegmentIndex | undefined> {
  const info = await store.head(key);
  if (!info) return undefined;
  const m = info.metadata;
  return {
    sha256: m.sha256 ?? "",
    ...(m["plain-sha256"] ? { plain_sha256: m["plain-sha256"] } : {}),
    captured_at: Number(m["captured-at"] ?? 0),
    tail_sha256: m["tail-sha256"] ?? "",
    first_time: Number(m["first-time"] ?? 0),
    last_time: Number(m["last-time"] ?? 0),
    ...(m["prev-hash"] ? { prev_hash: m["prev-hash"] } : {}),
    ...(m["last-hash"] ? { last_hash: m["last-hash"] } : {}),
  };
}

/** Whether `store` holds a WAL archive: at least one generation record (`gen-<id>.json`). */
export async function holdsGenerations(store: BackupStore): Promise<boolean> {
  return (await store.list("gen-")).some((o) => parseArchiveKey(o.key)?.kind === "generation");
}
