/**
 * The keys of a WAL archive (docs/formats.md "WAL archive"): generation records, base snapshots
 * and their indexes, segments. Everything continuity needs is in a segment's name (stream, byte
 * range, seq range) so a listing alone shows holes; the rest is in its metadata.
 */
import { randomBytes } from "node:crypto";

/** 16 digits: byte offsets up to 10^16 sort as text. */
const OFFSET_DIGITS = 16;

export function newGenerationId(now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.(\d{3})Z$/, "$1Z");
  return `g${stamp}-${randomBytes(2).toString("hex")}`;
}

const GEN_ID = "g\\d{8}T\\d{9}Z-[0-9a-f]{4}";
const GENERATION_KEY = new RegExp(`^gen-(${GEN_ID})\\.json$`);
const SNAPSHOT_KEY = new RegExp(`^gen-(${GEN_ID})\\.snap-(\\d{6})\\.tar\\.gz(\\.enc|\\.age)?$`);
const SNAPSHOT_INDEX_KEY = new RegExp(`^gen-(${GEN_ID})\\.snap-(\\d{6})\\.idx\\.json$`);
const SEGMENT_KEY = new RegExp(`^gen-(${GEN_ID})\\.seg\\.(.+)\\.(\\d{16})-(\\d{16})(?:\\.s(\\d+)-(\\d+))?$`);

export const generationKey = (gen: string): string => `gen-${gen}.json`;
export const generationPrefix = (gen: string): string => `gen-${gen}.`;

const snapNumber = (n: number): string => String(n).padStart(6, "0");
/** A snapshot is an ordinary backup archive: `.tar.gz`, `.tar.gz.enc` (password) or `.tar.gz.age` (recipients). */
export const snapshotKey = (gen: string, n: number, scheme?: "fernet" | "age"): string =>
  `gen-${gen}.snap-${snapNumber(n)}.tar.gz${scheme === "fernet" ? ".enc" : scheme === "age" ? ".age" : ""}`;
export const snapshotIndexKey = (gen: string, n: number): string =>
  `gen-${gen}.snap-${snapNumber(n)}.idx.json`;

/** A stream's name in keys: its path under `.sdd/`, `/` as `%2F`. */
export const streamName = (rel: string): string => encodeURIComponent(rel);
export const streamPath = (name: string): string => decodeURIComponent(name);

export interface SegmentName {
  generation: string;
  /** Path under `.sdd/` (decoded). */
  stream: string;
  from: number;
  to: number;
  /** WAL segments: seq of the first and last entry. */
  firstSeq?: number;
  lastSeq?: number;
}

const pad = (n: number): string => String(n).padStart(OFFSET_DIGITS, "0");

export function segmentKey(s: SegmentName): string {
  const seqs = s.firstSeq !== undefined ? `.s${s.firstSeq}-${s.lastSeq}` : "";
  return `gen-${s.generation}.seg.${streamName(s.stream)}.${pad(s.from)}-${pad(s.to)}${seqs}`;
}

export function parseSegmentKey(key: string): SegmentName | undefined {
  const m = SEGMENT_KEY.exec(key);
  if (!m) return undefined;
  const out: SegmentName = {
    generation: m[1]!,
    stream: streamPath(m[2]!),
    from: Number(m[3]),
    to: Number(m[4]),
  };
  if (m[5] !== undefined) {
    out.firstSeq = Number(m[5]);
    out.lastSeq = Number(m[6]);
  }
  return out;
}

export type ArchiveKey =
  | { kind: "generation"; generation: string }
  | { kind: "snapshot"; generation: string; number: number; encrypted: boolean }
  | { kind: "snapshot-index"; generation: string; number: number }
  | ({ kind: "segment" } & SegmentName);

/** What an archive key is, or undefined for a foreign key. */
export function parseArchiveKey(key: string): ArchiveKey | undefined {
  let m = GENERATION_KEY.exec(key);
  if (m) return { kind: "generation", generation: m[1]! };
  m = SNAPSHOT_KEY.exec(key);
  if (m) return { kind: "snapshot", generation: m[1]!, number: Number(m[2]), encrypted: m[3] !== undefined };
  m = SNAPSHOT_INDEX_KEY.exec(key);
  if (m) return { kind: "snapshot-index", generation: m[1]!, number: Number(m[2]) };
  const seg = parseSegmentKey(key);
  return seg ? { kind: "segment", ...seg } : undefined;
}

/** True for a WAL run's stream (`runtime/wal/<run>.wal.jsonl`). */
export function walRunOf(stream: string): string | undefined {
  return /^runtime\/wal\/([^/]+)\.wal\.jsonl$/.exec(stream)?.[1];
}
