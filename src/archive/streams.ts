/**
 * The append-only files a WAL archive ships (its streams) and how much of each is durable.
 *
 * Whatever is read here is on disk: the file's size is taken, then the file is fsynced (an fsync
 * through any descriptor flushes every byte written before it), then only bytes below that size
 * are read. A WAL is cut after its last entry that parses, hashes and links to the one before;
 * any other log after its last complete line. So a segment never holds a byte a crash could
 * take back, and never half a line.
 */
import { createHash } from "node:crypto";
import { open, readdir, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { GENESIS_HASH, checkLine } from "../wal/entry.js";
import { walRunOf } from "./names.js";
import { fsyncHandle } from "../workspace/durable.js";

/** The streams of a workspace: paths under `.sdd/`, sorted, WAL runs last. */
export async function listStreams(root: string): Promise<string[]> {
  const names = async (rel: string, keep: (n: string) => boolean): Promise<string[]> => {
    const all = await readdir(path.join(root, rel)).catch(() => [] as string[]);
    return all.filter(keep).map((n) => `${rel}/${n}`);
  };
  const logs = [
    ...(await names("audit", (n) => n.endsWith(".jsonl"))),
    ...(await names("metrics", (n) => n === "cost-ledger.jsonl")),
    ...(await names("runs", (n) => n.endsWith(".jsonl"))),
    ...(await names("runtime/wal", (n) => n === "idempotency.jsonl")),
  ].sort();
  const wals = (await names("runtime/wal", (n) => n.endsWith(".wal.jsonl"))).sort();
  return [...logs, ...wals];
}

/** Where a stream ends (in a snapshot, a segment, or the archiver's view of what is shipped). */
export interface StreamEnd {
  length: number;
  /** sha256 of the last line before `length` (newline included); "" when length is 0. */
  tail_sha256: string;
  /** WAL streams: the last entry (seq -1 and the genesis hash when empty). */
  seq?: number;
  entry_hash?: string;
}

export const emptyEnd = (stream: string): StreamEnd =>
  walRunOf(stream) !== undefined
    ? { length: 0, tail_sha256: "", seq: -1, entry_hash: GENESIS_HASH }
    : { length: 0, tail_sha256: "" };

export interface DurableChunk {
  bytes: Buffer;
  from: number;
  end: StreamEnd;
  firstSeq?: number;
  /** The entry before the first (WAL). */
  prevHash?: string;
  /** Epoch ms of the first and last line that carries a time (0: none). */
  firstTime: number;
  lastTime: number;
  /** Bytes after `end.length` that are durable but not yet complete or valid. */
  pending: number;
  /** More durable bytes follow than one read takes: this chunk is not the end of the cycle. */
  more: boolean;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Epoch ms of a log line's own time (`timestamp` or `created_at`, seconds or ISO), 0 if none. */
export function lineTime(line: string): number {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    return 0;
  }
  if (typeof row !== "object" || row === null) return 0;
  const r = row as Record<string, unknown>;
  const t = r.timestamp ?? r.created_at;
  if (typeof t === "number") return Math.round(t * 1000);
  if (typeof t === "string") {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? 0 : ms;
  }
  return 0;
}

/**
 * The durable, complete bytes of `file` after `after` (at most about `maxBytes`, whole lines),
 * or undefined when the file is gone. `after` must be a line boundary the archive already holds.
 */
export async function readDurable(
  file: string,
  stream: string,
  after: StreamEnd,
  maxBytes = 8 * 1024 * 1024,
): Promise<DurableChunk | undefined> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    await fsyncHandle(fh);
    if (size < after.length) return undefined;
    let want = Math.min(size - after.length, maxBytes);
    for (;;) {
      const buf = Buffer.alloc(want);
      const { bytesRead } = await fh.read(buf, 0, want, after.length);
      const data = buf.subarray(0, bytesRead);
      const lastNl = data.lastIndexOf(0x0a);
      // One line longer than maxBytes: read on until it ends (or the durable bytes do).
      if (lastNl < 0 && after.length + want < size) {
        want = Math.min(size - after.length, want * 2);
        continue;
      }
      const chunk = cutLines(data.subarray(0, lastNl + 1), stream, after);
      chunk.pending = size - chunk.end.length;
      chunk.more = after.length + want < size;
      return chunk;
    }
  } finally {
    await fh.close();
  }
}

/** The prefix of `data` (whole lines) that may be shipped after `after`, with its index facts. */
function cutLines(data: Buffer, stream: string, after: StreamEnd): DurableChunk {
  const wal = walRunOf(stream) !== undefined;
  let seq = after.seq ?? -1;
  let hash = after.entry_hash ?? GENESIS_HASH;
  let firstSeq: number | undefined;
  let firstTime = 0;
  let lastTime = 0;
  let used = 0;
  let tail = after.tail_sha256;
  for (let start = 0; start < data.length;) {
    const nl = data.indexOf(0x0a, start);
    const line = data.subarray(start, nl);
    let time: number;
    if (wal) {
      const c = checkLine(line.toString("utf8"));
      if (!c.ok || c.entry.seq !== seq + 1 || c.entry.prev_hash !== hash) break;
      seq = c.entry.seq;
      hash = c.entry.entry_hash;
      firstSeq ??= seq;
      time = Math.round(c.entry.timestamp * 1000);
    } else {
      time = lineTime(line.toString("utf8"));
    }
    if (time > 0) {
      if (firstTime === 0) firstTime = time;
      lastTime = time;
    }
    tail = sha256(data.subarray(start, nl + 1));
    used = nl + 1;
    start = nl + 1;
  }
  const end: StreamEnd = { length: after.length + used, tail_sha256: tail };
  if (wal) Object.assign(end, { seq, entry_hash: hash });
  const chunk: DurableChunk = {
    bytes: data.subarray(0, used),
    from: after.length,
    end,
    firstTime,
    lastTime,
    pending: 0,
    more: false,
  };
  if (wal && firstSeq !== undefined)
    Object.assign(chunk, { firstSeq, prevHash: after.entry_hash ?? GENESIS_HASH });
  return chunk;
}

/** sha256 of the line that ends at `length` (undefined: no line ends there). */
async function lineShaBefore(fh: FileHandle, length: number): Promise<string | undefined> {
  for (let window = 64 * 1024; ; window *= 4) {
    const start = Math.max(0, length - window);
    const buf = Buffer.alloc(length - start);
    await fh.read(buf, 0, buf.length, start);
    if (buf[buf.length - 1] !== 0x0a) return undefined;
    const prevNl = buf.lastIndexOf(0x0a, buf.length - 2);
    if (prevNl >= 0 || start === 0) return sha256(buf.subarray(prevNl + 1));
  }
}

/**
 * Whether the file still holds what the archive says ends at `end`: at least that long, and the
 * line before `end.length` has the same sha256. A restored or rolled-back workspace fails this.
 */
export async function stillContinues(file: string, end: StreamEnd): Promise<boolean> {
  if (end.length === 0) return true;
  let fh;
  try {
    fh = await open(file, "r");
  } catch {
    return false;
  }
  try {
    if ((await fh.stat()).size < end.length) return false;
    return (await lineShaBefore(fh, end.length)) === end.tail_sha256;
  } finally {
    await fh.close();
  }
}

/**
 * The end of a snapshot's copy of a stream: its first `length` bytes, the WAL position the
 * snapshot's manifest gives. Undefined when no line ends there (not a cut we can continue from).
 */
export async function endAt(
  file: string,
  stream: string,
  length: number,
  wal?: { seq: number; entry_hash: string } | null,
): Promise<StreamEnd | undefined> {
  if (length === 0) return emptyEnd(stream);
  const fh = await open(file, "r");
  try {
    const tail = await lineShaBefore(fh, length);
    if (tail === undefined) return undefined;
    const end: StreamEnd = { length, tail_sha256: tail };
    if (walRunOf(stream) !== undefined) {
      if (!wal) return undefined;
      Object.assign(end, { seq: wal.seq, entry_hash: wal.entry_hash });
    }
    return end;
  } finally {
    await fh.close();
  }
}
