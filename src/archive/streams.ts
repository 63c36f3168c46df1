/**
 * The append-only files a WAL archive ships (its streams) and how much of each is durable.
 *
 * Whatever is read here is on disk: the file's size is taken, then the file's data is synced (an
 * fdatasync through any descriptor flushes every byte written before it, and the size that makes
 * them readable; the WAL writer's own syncs are fdatasyncs too), then only bytes below that size
 * are read. A WAL is cut after its last whole entry that links to the one before (its seq and its
 * prev_hash field; the first and last entries of a chunk also parse and hash, and a chunk that
 * is not in the writers' frame is checked entry by entry); any other log after its last complete
 * line. So a segment never holds a byte a crash could
 * take back, and never half a line.
 */
import { sha256Hex } from "../dr/manifest.js";
import { open, readdir, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { linkedLines } from "../wal/chain-links.js";
import { GENESIS_HASH, checkLine, entryTimeMs, type WalEntry } from "../wal/entry.js";
import { isStream, walRunOf } from "./names.js";
import { datasyncHandle } from "../workspace/durable.js";

/**
 * The streams of a workspace: paths under `.sdd/`, sorted, WAL runs last. A file whose name no
 * reader of the archive would take for a stream (`isStream`) is not shipped.
 */
export async function listStreams(root: string): Promise<string[]> {
  const names = async (rel: string): Promise<string[]> =>
    (await readdir(path.join(root, rel)).catch(() => [] as string[])).map((n) => `${rel}/${n}`);
  const [audit, metrics, runs, wal] = await Promise.all(
    ["audit", "metrics", "runs", "runtime/wal"].map(names),
  );
  const logs = [
    ...audit!.filter((n) => n.endsWith(".jsonl")),
    ...metrics!.filter((n) => n === "metrics/cost-ledger.jsonl"),
    ...runs!.filter((n) => n.endsWith(".jsonl")),
    ...wal!.filter((n) => n === "runtime/wal/idempotency.jsonl"),
  ]
    .filter(isStream)
    .sort();
  const wals = wal!.filter((n) => n.endsWith(".wal.jsonl") && isStream(n)).sort();
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
  /** A WAL's durable bytes after `end.length` that this cut leaves (pending > 0): what and why. */
  held?: HeldBytes;
}

/**
 * The durable bytes of a WAL that are not shipped: after `end.length`, `pending` bytes, of which
 * `lines` complete lines (the first of them failed: `failure`) and maybe a line without newline.
 * `validAfter`: a later line parses and hashes (damage, not a torn tail; docs/wal.md).
 */
export interface HeldBytes {
  lines: number;
  failure?: string;
  /** The seq the first held line claims, when it parses. */
  claimedSeq?: number;
  validAfter?: number;
}

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
  if (typeof t === "number") return entryTimeMs(t);
  if (typeof t === "string") {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? 0 : ms;
  }
  return 0;
}

/**
 * The memory a shipping cycle reads into, kept from one read to the next: a fresh buffer for
 * every read costs a page fault per 4 KiB touched, most of the kernel time of shipping. A
 * chunk's bytes are a view of it, valid until the next read through the same ReadBuffer.
 */
export class ReadBuffer {
  private buf = Buffer.allocUnsafeSlow(0);
  constructor(private readonly retainBytes = RETAINED_READ_BYTES) {}
  /** `n` bytes of memory to read into (one's own for a read bigger than what is kept). */
  take(n: number): Buffer {
    if (n > this.retainBytes) return Buffer.allocUnsafeSlow(n);
    if (this.buf.length < n)
      this.buf = Buffer.allocUnsafeSlow(Math.min(this.retainBytes, Math.max(n, this.buf.length * 2)));
    return this.buf.subarray(0, n);
  }
}

/** A read buffer keeps at most this much (a segment's default size, so every common read). */
const RETAINED_READ_BYTES = 8 * 1024 * 1024;

/** `file` open for reading, or undefined when it is gone. */
export async function openStream(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * The durable, complete bytes of `file` after `after` (at most about `maxBytes`, whole lines),
 * or undefined when the file is gone. `after` must be a line boundary the archive already holds.
 */
export async function readDurable(
  file: string,
  stream: string,
  after: StreamEnd,
  maxBytes?: number,
): Promise<DurableChunk | undefined> {
  const fh = await openStream(file);
  if (!fh) return undefined;
  try {
    return await readDurableFrom(fh, stream, after, maxBytes);
  } finally {
    await fh.close();
  }
}

/**
 * readDurable through a descriptor the caller holds (a cycle opens each stream once for its
 * continuity check and its reads). `size`: the file's size taken by the caller just before, so
 * not taken again; every byte below it is made durable before it is read. `into`: the chunk's
 * bytes are read into it (and change with its next read).
 */
export async function readDurableFrom(
  fh: FileHandle,
  stream: string,
  after: StreamEnd,
  maxBytes = 8 * 1024 * 1024,
  size?: number,
  into?: ReadBuffer,
): Promise<DurableChunk | undefined> {
  size ??= (await fh.stat()).size;
  // Nothing past the archived end: no byte is read, so none needs to be made durable first.
  if (size > after.length) await datasyncHandle(fh);
  if (size < after.length) return undefined;
  let want = Math.min(size - after.length, maxBytes);
  for (;;) {
    const buf = into ? into.take(want) : Buffer.allocUnsafe(want); // only the bytes read are used
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
    if (chunk.pending > 0 && walRunOf(stream) !== undefined)
      chunk.held = heldBytes(data.subarray(chunk.bytes.length, lastNl + 1), chunk.end);
    return chunk;
  }
}

/** The prefix of `data` (whole lines) that may be shipped after `after`, with its index facts. */
function cutLines(data: Buffer, stream: string, after: StreamEnd): DurableChunk {
  if (walRunOf(stream) === undefined) return logChunk(data, after);
  return (data.length > 0 ? cleanWalChunk(data, after) : undefined) ?? cutWalLines(data, after);
}

const chunkOf = (data: Buffer, after: StreamEnd, end: StreamEnd, firstTime: number, lastTime: number) => ({
  bytes: data,
  from: after.length,
  end,
  firstTime,
  lastTime,
  pending: 0,
  more: false,
});

/** The line of `data` that starts at `start` (without its newline). */
const lineAt = (data: Buffer, start: number): Buffer => data.subarray(start, data.indexOf(0x0a, start));

/** Where the line that ends at `end` (just after its newline) starts. */
const lineStartBefore = (data: Buffer, end: number): number =>
  end < 2 ? 0 : data.lastIndexOf(0x0a, end - 2) + 1;

/**
 * A log takes every complete line; its index needs only the first and last line that carry a
 * time and the last line's hash, so only those lines are read.
 */
function logChunk(data: Buffer, after: StreamEnd): DurableChunk {
  if (data.length === 0)
    return chunkOf(data, after, { length: after.length, tail_sha256: after.tail_sha256 }, 0, 0);
  let firstTime = 0;
  for (let start = 0; start < data.length && firstTime === 0; start = data.indexOf(0x0a, start) + 1)
    firstTime = lineTime(lineAt(data, start).toString("utf8"));
  let lastTime = 0;
  for (let end = data.length; end > 0 && lastTime === 0; end = lineStartBefore(data, end))
    lastTime = lineTime(lineAt(data, lineStartBefore(data, end)).toString("utf8"));
  const end = {
    length: after.length + data.length,
    tail_sha256: sha256Hex(data.subarray(lineStartBefore(data, data.length))),
  };
  return chunkOf(data, after, end, firstTime, lastTime);
}

/** The entry of a line (without its newline) when it parses and its hash is right. */
const verifiedEntry = (line: Buffer): WalEntry | undefined => {
  const c = checkLine(line.toString("utf8"));
  return c.ok ? c.entry : undefined;
};

/**
 * The common case, without a parse or a hash per entry: every line is in the writers' frame, in
 * seq order, and links by its prev_hash field to the line before and the first to `after`
 * (linkedLines). The first and last entries, which the index names, are parsed and their hashes
 * checked; the entries between are not re-hashed here (docs/formats.md "What a segment proves").
 * Undefined sends the chunk line by line (cutWalLines), which finds where it must be cut.
 */
function cleanWalChunk(data: Buffer, after: StreamEnd): DurableChunk | undefined {
  const prevHash = after.entry_hash ?? GENESIS_HASH;
  const links = linkedLines(data, { seq: after.seq ?? -1, hash: prevHash });
  if (!links) return undefined;
  const first = verifiedEntry(lineAt(data, 0));
  const last = links.count === 1 ? first : verifiedEntry(lineAt(data, links.lastStart));
  if (!first || !last || first.prev_hash !== prevHash || first.seq !== links.firstSeq) return undefined;
  if (last.seq !== links.lastSeq || last.entry_hash !== links.lastHash) return undefined;
  const firstTime = entryTimeMs(first.timestamp);
  const lastTime = entryTimeMs(last.timestamp);
  // A time that is not positive is skipped by the index: the line-by-line path finds the next one.
  if (firstTime <= 0 || lastTime <= 0) return undefined;
  const end: StreamEnd = {
    length: after.length + data.length,
    tail_sha256: sha256Hex(data.subarray(links.lastStart)),
    seq: links.lastSeq,
    entry_hash: links.lastHash,
  };
  return { ...chunkOf(data, after, end, firstTime, lastTime), firstSeq: links.firstSeq, prevHash };
}

/** A WAL's lines up to the first that does not parse, hash or link to the one before. */
function cutWalLines(data: Buffer, after: StreamEnd): DurableChunk {
  let seq = after.seq ?? -1;
  let hash = after.entry_hash ?? GENESIS_HASH;
  let firstSeq: number | undefined;
  let firstTime = 0;
  let lastTime = 0;
  let used = 0;
  let tail = after.tail_sha256;
  for (let start = 0; start < data.length;) {
    const nl = data.indexOf(0x0a, start);
    const c = checkLine(data.subarray(start, nl).toString("utf8"));
    if (!c.ok || c.entry.seq !== seq + 1 || c.entry.prev_hash !== hash) break;
    seq = c.entry.seq;
    hash = c.entry.entry_hash;
    firstSeq ??= seq;
    const time = entryTimeMs(c.entry.timestamp);
    if (time > 0) {
      if (firstTime === 0) firstTime = time;
      lastTime = time;
    }
    tail = sha256Hex(data.subarray(start, nl + 1));
    used = nl + 1;
    start = nl + 1;
  }
  const end: StreamEnd = { length: after.length + used, tail_sha256: tail, seq, entry_hash: hash };
  const chunk: DurableChunk = chunkOf(data.subarray(0, used), after, end, firstTime, lastTime);
  if (firstSeq !== undefined) Object.assign(chunk, { firstSeq, prevHash: after.entry_hash ?? GENESIS_HASH });
  return chunk;
}

/**
 * What the complete lines `rest` (cut off after `end`) are: why the first is not the entry after
 * `end`, and whether any later one is a valid entry (scanned from the newest back: a torn tail
 * has none, so it is read whole, and it is short).
 */
function heldBytes(rest: Buffer, end: StreamEnd): HeldBytes {
  const lines = countNewlines(rest);
  if (lines === 0) return { lines };
  const first = lineAt(rest, 0);
  const c = checkLine(first.toString("utf8"));
  const held: HeldBytes = { lines };
  if (!c.ok) {
    held.failure = `${c.kind}: ${c.message}`;
    const seq = claimedSeq(first);
    if (seq !== undefined) held.claimedSeq = seq;
  } else {
    held.claimedSeq = c.entry.seq;
    held.failure =
      c.entry.seq !== (end.seq ?? -1) + 1
        ? `seq ${c.entry.seq} where ${(end.seq ?? -1) + 1} follows`
        : `prev_hash ${c.entry.prev_hash} does not link to seq ${end.seq ?? -1} (${end.entry_hash})`;
  }
  for (let e = rest.length; lines > 1 && e > first.length + 1; e = lineStartBefore(rest, e)) {
    const later = verifiedEntry(lineAt(rest, lineStartBefore(rest, e)));
    if (later) {
      held.validAfter = later.seq;
      break;
    }
  }
  return held;
}

/** The seq a line that fails its check says it has, when it parses as an object with one. */
function claimedSeq(line: Buffer): number | undefined {
  try {
    const seq = (JSON.parse(line.toString("utf8")) as { seq?: unknown } | null)?.seq;
    return Number.isInteger(seq) ? (seq as number) : undefined;
  } catch {
    return undefined;
  }
}

function countNewlines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) n++;
  return n;
}

/**
 * sha256 of the line that ends at `length` (undefined: no line ends there). The window starts at
 * a few lines' worth and grows only for a longer line.
 */
async function lineShaBefore(fh: FileHandle, length: number): Promise<string | undefined> {
  for (let window = 4 * 1024; ; window *= 4) {
    const start = Math.max(0, length - window);
    const buf = Buffer.allocUnsafe(length - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    if (bytesRead < buf.length || buf[buf.length - 1] !== 0x0a) return undefined;
    const prevNl = buf.lastIndexOf(0x0a, buf.length - 2);
    if (prevNl >= 0 || start === 0) return sha256Hex(buf.subarray(prevNl + 1));
  }
}

/**
 * Whether the file still holds what the archive says ends at `end`: at least that long, and the
 * line before `end.length` has the same sha256. A restored or rolled-back workspace fails this.
 */
export async function stillContinues(file: string, end: StreamEnd): Promise<boolean> {
  if (end.length === 0) return true;
  const fh = await openStream(file).catch(() => undefined);
  if (!fh) return false;
  try {
    return await continuesAt(fh, end, (await fh.stat()).size);
  } finally {
    await fh.close();
  }
}

/** stillContinues through a descriptor the caller holds, whose size it took. */
export async function continuesAt(fh: FileHandle, end: StreamEnd, size: number): Promise<boolean> {
  if (end.length === 0) return true;
  if (size < end.length) return false;
  return (await lineShaBefore(fh, end.length)) === end.tail_sha256;
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
