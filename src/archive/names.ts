/**
 * The keys of a WAL archive (docs/formats.md "WAL archive"): generation records, base snapshots
 * and their indexes, segments. Everything continuity needs is in a segment's name (stream, byte
 * range, seq range) so a listing alone shows holes; the rest is in its metadata.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { isRunId } from "../workspace/layout.js";

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

/**
 * The streams an archiver ships (`listStreams`), as paths under `.sdd/`: a restore writes each
 * there, so a name read from a store is one of these or no stream at all. One file name of a
 * folder's logs holds no separator, is no `.`/`..`, and no control character.
 */
const LOG_NAME = String.raw`[^/\\\x00-\x1f\x7f]+\.jsonl`;
const STREAM = new RegExp(
  String.raw`^(?:audit/${LOG_NAME}|runs/${LOG_NAME}|metrics/cost-ledger\.jsonl|runtime/wal/idempotency\.jsonl|runtime/wal/([^/]+)\.wal\.jsonl)$`,
);

/** Whether `rel` is a stream an archiver ships (its WAL run part a run id). */
export function isStream(rel: string): boolean {
  const m = STREAM.exec(rel);
  return m !== null && (m[1] === undefined || isRunId(m[1]));
}

/**
 * The file of stream `rel` in the `.sdd/` folder `root`. Names are checked where they are read
 * (`streamPath`, the snapshot index); this refuses anything else that would leave `root` before
 * a file is written.
 */
export function streamFile(root: string, rel: string): string {
  const base = path.resolve(root);
  const file = path.resolve(base, rel);
  const inside = path.relative(base, file);
  if (
    !isStream(rel) ||
    inside === "" ||
    inside === ".." ||
    inside.startsWith(`..${path.sep}`) ||
    path.isAbsolute(inside)
  )
    throw new UserError(
      `${JSON.stringify(rel)} is no stream an archiver ships: nothing written outside ${base}`,
      ExitCode.CORRUPT,
    );
  return file;
}

/** The path of a stream's name in a key; undefined when it decodes to no stream (`isStream`). */
export function streamPath(name: string): string | undefined {
  let rel: string;
  try {
    rel = decodeURIComponent(name);
  } catch {
    return undefined;
  }
  return isStream(rel) ? rel : undefined;
}

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

/** A segment's name; undefined for any other key, and for one `parseArchiveKey` refuses. */
export function parseSegmentKey(key: string): SegmentName | undefined {
  const seg = segmentOf(key);
  return seg && !("refused" in seg) ? seg : undefined;
}

/**
 * A segment's name; `{refused}` for a key in a segment's shape whose stream is none an archiver
 * ships (`..`, an absolute path, another folder, a control character): a hostile or damaged
 * object, which no reader may turn into a path. Undefined for any other key.
 */
function segmentOf(key: string): SegmentName | { generation: string; refused: string } | undefined {
  const m = SEGMENT_KEY.exec(key);
  if (!m) return undefined;
  const stream = streamPath(m[2]!);
  if (stream === undefined)
    return {
      generation: m[1]!,
      refused: `its stream ${JSON.stringify(safeDecode(m[2]!))} is none an archiver ships (docs/formats.md "WAL archive")`,
    };
  const out: SegmentName = {
    generation: m[1]!,
    stream,
    from: Number(m[3]),
    to: Number(m[4]),
  };
  if (m[5] !== undefined) {
    out.firstSeq = Number(m[5]);
    out.lastSeq = Number(m[6]);
  }
  return out;
}

const safeDecode = (name: string): string => {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
};

export type ArchiveKey =
  | { kind: "generation"; generation: string }
  | { kind: "snapshot"; generation: string; number: number; encrypted: boolean }
  | { kind: "snapshot-index"; generation: string; number: number }
  | ({ kind: "segment" } & SegmentName)
  | { kind: "refused-segment"; generation: string; reason: string };

/** What an archive key is, or undefined for a foreign key. */
export function parseArchiveKey(key: string): ArchiveKey | undefined {
  let m = GENERATION_KEY.exec(key);
  if (m) return { kind: "generation", generation: m[1]! };
  m = SNAPSHOT_KEY.exec(key);
  if (m) return { kind: "snapshot", generation: m[1]!, number: Number(m[2]), encrypted: m[3] !== undefined };
  m = SNAPSHOT_INDEX_KEY.exec(key);
  if (m) return { kind: "snapshot-index", generation: m[1]!, number: Number(m[2]) };
  const seg = segmentOf(key);
  if (!seg) return undefined;
  return "refused" in seg
    ? { kind: "refused-segment", generation: seg.generation, reason: seg.refused }
    : { kind: "segment", ...seg };
}

/** The run of a WAL run's stream (`runtime/wal/<run>.wal.jsonl`); undefined for any other stream. */
export function walRunOf(stream: string): string | undefined {
  const run = /^runtime\/wal\/([^/]+)\.wal\.jsonl$/.exec(stream)?.[1];
  return isRunId(run) ? run : undefined;
}
