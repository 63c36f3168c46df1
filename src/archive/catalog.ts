/**
 * What an archive location holds, read from one listing plus the small JSON records
 * (generation records and snapshot indexes): never a payload.
 */
import { Readable } from "node:stream";
import { ExitCode, UserError } from "../errors/errors.js";
import type { BackupStore } from "../storage/store.js";
import type { WalError } from "../wal/chain.js";
import { generationKey, isStream, parseArchiveKey, snapshotKey, type SegmentName } from "./names.js";
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

/**
 * What a field must be: a test and the words for it. The records are checked by hand, not with
 * zod: zod's schemas, built in a point restore's process, made its old generation grow with every
 * line replayed (restore-old-gen.test.ts: 18 bytes a line against about 5).
 */
type FieldRule = { test: (v: unknown) => boolean; expected: string; optional?: true };
type Fields = Record<string, FieldRule>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const rule = (test: (v: unknown) => boolean, expected: string): FieldRule => ({ test, expected });
const optional = (r: FieldRule): FieldRule => ({ ...r, optional: true });
const text = rule((v) => typeof v === "string", "a string");
const count = rule((v) => Number.isSafeInteger(v) && (v as number) >= 0, "a whole number >= 0");
const instant = rule((v) => typeof v === "number" && Number.isFinite(v), "a number");
const literal = (want: string): FieldRule => rule((v) => v === want, JSON.stringify(want));
const sha256Hex = rule((v) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v), "a sha256 in hex");

/** The first field of `value` that breaks its rule, as `key: what was wrong`; undefined when none. */
function fieldProblem(value: unknown, fields: Fields, at = ""): string | undefined {
  if (!isObject(value)) return `${at || "the record: "}expected a JSON object`;
  for (const [key, r] of Object.entries(fields)) {
    const v = value[key];
    if (v === undefined) {
      if (r.optional) continue;
      return `${at}${key}: missing`;
    }
    if (!r.test(v)) return `${at}${key}: expected ${r.expected}`;
  }
  return undefined;
}

const ENCRYPTION_FIELDS: Fields = {
  scheme: rule((v) => v === "fernet" || v === "age", 'one of "fernet"|"age"'),
  key_check: optional(text),
  age_header: optional(text),
  recipients: optional(
    rule((v) => Array.isArray(v) && v.every((x) => typeof x === "string"), "a list of strings"),
  ),
};

/** What readers rely on in a generation record; other fields (a newer version's) are let through. */
const GENERATION_FIELDS: Fields = {
  format: literal(GENERATION_FORMAT),
  generation: text,
  created_at: text,
  host: text,
  workspace: text,
  previous: rule((v) => v === null || typeof v === "string", "a string or null"),
  cause: text,
  encrypted: rule((v) => typeof v === "boolean", "true or false"),
  encryption: optional(rule(isObject, "an object")),
  compression: optional(text),
};

const STREAM_END_FIELDS: Fields = {
  length: count,
  tail_sha256: text,
  seq: optional(rule((v) => Number.isSafeInteger(v) && (v as number) >= -1, "a whole number >= -1")),
  entry_hash: optional(text),
};

const SNAPSHOT_FIELDS: Fields = {
  format: literal(SNAPSHOT_FORMAT),
  generation: text,
  number: count,
  key: text,
  sha256: sha256Hex,
  size_bytes: count,
  started_at: instant,
  completed_at: instant,
  streams: rule(isObject, "an object"),
  wal_breaks: optional(rule(Array.isArray, "a list")),
};

function generationRecordProblem(value: unknown): string | undefined {
  const problem = fieldProblem(value, GENERATION_FIELDS);
  if (problem || !isObject(value) || value.encryption === undefined) return problem;
  return fieldProblem(value.encryption, ENCRYPTION_FIELDS, "encryption.");
}

function snapshotIndexProblem(value: unknown): string | undefined {
  const problem = fieldProblem(value, SNAPSHOT_FIELDS);
  if (problem || !isObject(value)) return problem;
  for (const [stream, end] of Object.entries(value.streams as Record<string, unknown>)) {
    if (!isStream(stream)) return `streams: ${JSON.stringify(stream)} is no stream an archiver ships`;
    const bad = fieldProblem(end, STREAM_END_FIELDS, `streams.${stream}.`);
    if (bad) return bad;
  }
  return undefined;
}

/** A snapshot index that is in the store but cannot be read: why, and the archive it was for. */
export interface DamagedIndex {
  key: string;
  number: number;
  reason: string;
  /** The snapshot's archive, when it is there (unusable without its index). */
  archive?: string;
}

export interface StoredSegment extends SegmentName {
  key: string;
  size: number;
}

export interface GenerationListing {
  generation: string;
  record?: GenerationRecord;
  /** Why there is no `record` ("missing", or what is wrong with it): its segments cannot be read. */
  recordProblem?: string;
  snapshots: SnapshotIndex[];
  /** Snapshot archives without an index (an interrupted snapshot, or a lost index). */
  unindexed: string[];
  /** Snapshot indexes that are there but cannot be read. */
  damaged: DamagedIndex[];
  /**
   * Objects named as its segments whose stream is none an archiver ships (`parseSegmentKey`):
   * hostile or damaged, never read. A check names them; a restore of the generation refuses.
   */
  refused: { key: string; reason: string }[];
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

/** A JSON record of the archive checked against its schema: the value, or why it cannot be used. */
async function readRecord<T>(
  store: BackupStore,
  key: string,
  problemOf: (value: unknown) => string | undefined,
): Promise<{ value: T } | { problem: string }> {
  let value: unknown;
  try {
    value = JSON.parse((await readObject(store, key)).toString("utf8"));
  } catch (err) {
    if (err instanceof SyntaxError) return { problem: "not valid JSON" };
    throw err;
  }
  const problem = problemOf(value);
  return problem ? { problem } : { value: value as T };
}

/** Why an index cannot describe snapshot `number` of `gen`, or undefined when it does. */
function indexMismatch(idx: SnapshotIndex, gen: string, number: number): string | undefined {
  if (idx.generation !== gen) return `generation: ${JSON.stringify(idx.generation)}, its name says ${gen}`;
  if (idx.number !== number) return `number: ${idx.number}, its name says ${number}`;
  const keys = [undefined, "fernet", "age"].map((s) =>
    snapshotKey(gen, number, s as "fernet" | "age" | undefined),
  );
  if (!keys.includes(idx.key)) return `key: ${JSON.stringify(idx.key)} is not snapshot ${number}'s archive`;
  return undefined;
}

/**
 * The record a generation's segments are read by (how they are compressed and sealed), or a
 * refusal naming it (exit 5): without it, stored bytes would be taken for what they are not.
 */
export function recordOf(store: BackupStore, g: GenerationListing): GenerationRecord {
  if (g.record) return g.record;
  throw new UserError(
    `${store.describe(generationKey(g.generation))}: ${g.recordProblem ?? "missing"} (generation ${g.generation}'s record, which says how its segments are stored)`,
    ExitCode.CORRUPT,
  );
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
    if (!g)
      byGen.set(
        id,
        (g = { generation: id, snapshots: [], unindexed: [], damaged: [], refused: [], segments: new Map() }),
      );
    return g;
  };
  const snapshotKeys = new Map<string, string>();
  const indexKeys: { gen: string; key: string; number: number }[] = [];
  const recorded = new Set<string>();
  for (const obj of await store.list("")) {
    const k = parseArchiveKey(obj.key);
    if (!k) foreign.push(obj.key);
    else if (k.kind === "generation") recorded.add(gen(k.generation).generation);
    else if (k.kind === "snapshot") snapshotKeys.set(`${k.generation}/${k.number}`, obj.key);
    else if (k.kind === "snapshot-index")
      indexKeys.push({ gen: k.generation, key: obj.key, number: k.number });
    else if (k.kind === "refused-segment") gen(k.generation).refused.push({ key: obj.key, reason: k.reason });
    else addSegment(gen(k.generation), k, obj);
  }
  for (const ix of indexKeys) gen(ix.gen);
  for (const id of snapshotKeys.keys()) gen(id.split("/")[0]!);
  for (const g of byGen.values()) {
    if (!recorded.has(g.generation)) {
      g.recordProblem = "missing";
      continue;
    }
    const r = await readRecord<GenerationRecord>(store, generationKey(g.generation), generationRecordProblem);
    if ("value" in r && r.value.generation !== g.generation)
      g.recordProblem = `generation: ${JSON.stringify(r.value.generation)}, its name says ${g.generation}`;
    else if ("value" in r) g.record = r.value;
    else g.recordProblem = r.problem;
  }
  for (const ix of indexKeys) {
    const r = await readRecord<SnapshotIndex>(store, ix.key, snapshotIndexProblem);
    const problem = "value" in r ? indexMismatch(r.value, ix.gen, ix.number) : r.problem;
    const id = `${ix.gen}/${ix.number}`;
    if (problem || !("value" in r)) {
      const archive = snapshotKeys.get(id);
      gen(ix.gen).damaged.push({
        key: ix.key,
        number: ix.number,
        reason: problem!,
        ...(archive ? { archive } : {}),
      });
    } else gen(ix.gen).snapshots.push(r.value);
    snapshotKeys.delete(id);
  }
  for (const [id, key] of snapshotKeys) gen(id.split("/")[0]!).unindexed.push(key);
  for (const g of byGen.values()) {
    g.snapshots.sort((a, b) => a.number - b.number);
    sortSegments(g);
  }
  const generations = [...byGen.values()].sort((a, b) => (a.generation < b.generation ? -1 : 1));
  return { generations, foreign };
}

/**
 * Why snapshot `idx`'s archive is not what its index describes, as far as the store's metadata
 * tells (present, of the size indexed); undefined when it is. Its bytes are checked as they are read.
 */
export async function snapshotObjectProblem(
  store: BackupStore,
  idx: SnapshotIndex,
): Promise<string | undefined> {
  const info = await store.head(idx.key);
  if (!info) return "missing";
  if (info.size !== idx.size_bytes) return `${info.size} bytes, its index says ${idx.size_bytes}`;
  return undefined;
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

/**
 * Whether `store` holds a WAL archive: at least one object named as an archive's are (a generation
 * record, a snapshot or its index, a segment), so that an archive that lost its records is still
 * read as one, and its damage named.
 */
export async function holdsGenerations(store: BackupStore): Promise<boolean> {
  return (await store.list("gen-")).some((o) => parseArchiveKey(o.key) !== undefined);
}
