/**
 * Rebuilds one stream from a snapshot's copy plus segments, up to a cut: every segment's size
 * and sha256 against its index, every WAL entry's hash and link to the one before from the
 * snapshot's position on, and the lines up to the cut (a WAL seq, or an instant) appended
 * durably. A plain segment, compressed or not, is streamed from the store (hashed as it passes,
 * inflated, fed in whole lines), so memory does not depend on segment size; a sealed one is
 * authenticated whole first.
 * A missing, truncated or altered segment is a BrokenSegment naming it (exit 5).
 */
import { createHash } from "node:crypto";
import { sha256Hex } from "../dr/manifest.js";
import { mkdir, open, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GarbageBudget } from "../dr/memory.js";
import { ExitCode, UserError } from "../errors/errors.js";
import type { BackupStore } from "../storage/store.js";
import { checkBatch, type BatchVisitor } from "../wal/chain.js";
import { checkLine, entryTimeMs, type WalEntry } from "../wal/entry.js";
import { durableTruncate, fsyncDir, fsyncHandle, writeAllAt } from "../workspace/durable.js";
import { readSegmentIndex, type SegmentIndex, type StoredSegment } from "./catalog.js";
import { walRunOf } from "./names.js";
import {
  SegmentInflateError,
  decodeSegment,
  isInflateError,
  segmentInflater,
  undecodableReason,
  type SegmentCodec,
  type SegmentCompression,
} from "./segment-codec.js";
import { emptyEnd, lineTime, type StreamEnd } from "./streams.js";

export class BrokenSegment extends UserError {
  constructor(
    readonly stream: string,
    readonly key: string,
    reason: string,
    /** The last instant the stream is known whole before the break (epoch ms, 0: none). */
    readonly lastGoodTime: number,
    /**
     * A WAL stream whose break holds lines of unknown time: the seq of its last entry before the
     * break (its entries after may share that entry's millisecond, so only a cut by seq keeps it).
     */
    readonly lastGoodSeq?: number,
  ) {
    super(`${key}: ${reason}`, ExitCode.CORRUPT, { stream, segment: key, reason });
  }
}

/** Where to stop: after WAL entry `seq` of `run`, or after the last line at or before `atMs`. */
export interface Cut {
  atMs: number;
  run?: string;
  seq?: number;
}

export interface Applied {
  end: StreamEnd;
  /** Time of the last applied line that has one (epoch ms, 0: none). */
  lastTime: number;
  /** The target entry's own time, when this stream holds the `--at-seq` target. */
  targetTime?: number;
  segments: number;
}

/** Cuts `file` (a snapshot's copy) back to exactly `length`, creating it when missing. */
export async function cutAt(file: string, length: number): Promise<void> {
  await (await openAt(file, length)).close();
}

/** Opens `file` for appending at exactly `length` (a longer snapshot copy is cut back there). */
async function openAt(file: string, length: number) {
  await mkdir(path.dirname(file), { recursive: true });
  const fh = await open(file, "a+");
  const size = (await fh.stat()).size;
  if (size !== length) await durableTruncate(fh, length);
  return fh;
}

/** A WAL intent (committed=false) kept by the restore: a row of the uncommitted index. */
export interface KeptIntent {
  seq: number;
  entry_hash: string;
}

/** Which entries of the WAL lines kept to build, from their decision type and committed flag. */
export type EntriesWanted = (decisionType: string, committed: boolean) => boolean;

/** What a LineCutter gathers beside the bytes it keeps. */
export interface CutterOptions {
  /** Gather the intents among the WAL lines kept (`intents`). */
  collectIntents?: boolean;
  /** Which entries of the WAL lines kept to build (`kept`), from their type and committed flag. */
  entriesWanted?: EntriesWanted;
}

/** Decides line by line what of a segment's bytes the restore keeps. */
export class LineCutter {
  lastTime = 0;
  targetTime?: number;
  done = false;
  /** The intents among the WAL lines kept so far, when asked for (`collectIntents`). */
  readonly intents: KeptIntent[] = [];
  /** The wanted entries (`entriesWanted`) of the lines the last takeLines kept, in order. */
  kept: WalEntry[] = [];
  private readonly collectIntents: boolean;
  private readonly entriesWanted?: EntriesWanted;
  constructor(
    private readonly stream: string,
    private readonly key: string,
    private end: StreamEnd,
    private readonly cut: Cut,
    opts: CutterOptions = {},
  ) {
    this.collectIntents = opts.collectIntents ?? false;
    this.entriesWanted = opts.entriesWanted;
  }

  get position(): StreamEnd {
    return this.end;
  }

  /** Bytes of `data` (whole lines) to append; sets `done` once the cut is reached. */
  take(data: Buffer, segmentTo: number): Buffer {
    const keep = this.takeLines(data);
    this.checkEndsAt(segmentTo);
    return keep;
  }

  /** Bytes of `data` (whole lines, a part of a segment) to append; sets `done` once the cut is reached. */
  takeLines(data: Buffer): Buffer {
    this.kept = [];
    const run = walRunOf(this.stream);
    const used =
      (run !== undefined && data.length > 0 ? this.takeChecked(data, run) : undefined) ??
      this.takeLineByLine(data, run);
    return data.subarray(0, used);
  }

  /** After a segment's last line: its lines must end where its name says, unless the cut came first. */
  checkEndsAt(segmentTo: number): void {
    if (!this.done && this.end.length !== segmentTo) {
      throw new BrokenSegment(this.stream, this.key, "its lines do not end at its byte range", this.lastTime);
    }
  }

  /** Whether the WAL line at `seq` with time `time` is past the cut. */
  private beyond(run: string, seq: number, time: number): boolean {
    return this.cut.run === run && this.cut.seq !== undefined ? seq > this.cut.seq : time > this.cut.atMs;
  }

  /**
   * A WAL segment whose lines all verify and link on (checkBatch, the fast check `wal verify`
   * uses): each line's seq, time, commit flag and hash, and the entries wanted of the lines up to
   * the cut, come from the check itself. Undefined when the lines do not continue the stream:
   * the caller goes line by line, which names the break.
   */
  private takeChecked(data: Buffer, run: string): number | undefined {
    const wanted = this.entriesWanted;
    const starts: number[] = [];
    const seqs: number[] = [];
    const times: number[] = [];
    const intents: KeptIntent[] = [];
    const kept: WalEntry[] = [];
    let lastHash = "";
    let beyond = false;
    const visitor: BatchVisitor = {
      line: (l) => {
        if (beyond) return;
        const time = entryTimeMs(l.timestamp);
        starts.push(l.start);
        beyond = this.beyond(run, l.seq, time);
        if (beyond) return;
        seqs.push(l.seq);
        times.push(time);
        lastHash = l.entryHash;
        if (this.collectIntents && !l.committed) intents.push({ seq: l.seq, entry_hash: l.entryHash });
        if (wanted?.(l.decisionType, l.committed)) kept.push(l.entry());
      },
    };
    // A last line without its newline is named by the line-by-line path.
    const batch = data[data.length - 1] === 0x0a ? checkBatch(data, visitor) : undefined;
    if (!batch || batch.firstSeq !== (this.end.seq ?? -1) + 1 || batch.firstPrev !== this.end.entry_hash)
      return undefined;
    const n = seqs.length;
    // The kept lines end where the first line past the cut starts, else with the data.
    const used = n < starts.length ? starts[n]! : data.length;
    let lastTime = this.lastTime;
    for (let i = 0; i < n; i++) {
      const time = times[i]!;
      if (this.cut.run === run && seqs[i] === this.cut.seq) this.targetTime = time;
      if (time > 0) lastTime = time;
    }
    if (n > 0)
      this.end = {
        length: this.end.length + used,
        tail_sha256: sha256Hex(data.subarray(starts[n - 1]!, used)),
        seq: seqs[n - 1]!,
        entry_hash: lastHash,
      };
    this.lastTime = lastTime;
    this.done = beyond;
    for (const i of intents) this.intents.push(i);
    this.kept = kept;
    return used;
  }

  /** Every line parsed and checked on its own: the path that names a break. */
  private takeLineByLine(data: Buffer, run: string | undefined): number {
    let used = 0;
    for (let start = 0; start < data.length;) {
      const nl = data.indexOf(0x0a, start);
      if (nl < 0) throw new BrokenSegment(this.stream, this.key, "ends inside a line", this.lastTime);
      const text = data.subarray(start, nl).toString("utf8");
      let time: number;
      const next: StreamEnd = {
        length: this.end.length + (nl + 1 - start),
        tail_sha256: sha256Hex(data.subarray(start, nl + 1)),
      };
      if (run !== undefined) {
        const c = checkLine(text);
        if (!c.ok || c.entry.seq !== (this.end.seq ?? -1) + 1 || c.entry.prev_hash !== this.end.entry_hash) {
          const why = c.ok ? `entry seq ${c.entry.seq} does not follow seq ${this.end.seq}` : c.message;
          throw new BrokenSegment(this.stream, this.key, `altered: ${why}`, this.lastTime);
        }
        time = entryTimeMs(c.entry.timestamp);
        if (this.beyond(run, c.entry.seq, time)) {
          this.done = true;
          break;
        }
        if (this.cut.run === run && c.entry.seq === this.cut.seq) this.targetTime = time;
        if (this.collectIntents && !c.entry.committed)
          this.intents.push({ seq: c.entry.seq, entry_hash: c.entry.entry_hash });
        if (this.entriesWanted?.(c.entry.decision_type, c.entry.committed)) this.kept.push(c.entry);
        Object.assign(next, { seq: c.entry.seq, entry_hash: c.entry.entry_hash });
      } else {
        time = lineTime(text);
        if (time > this.cut.atMs) {
          this.done = true;
          break;
        }
      }
      if (time > 0) this.lastTime = time;
      this.end = next;
      used = nl + 1;
      start = nl + 1;
    }
    return used;
  }
}

/**
 * Why a listed segment cannot be checked, or undefined: it is gone, or its index (the sha256 and
 * times stored beside it) was lost, so neither its bytes nor its place in time can be trusted.
 */
export function indexProblem(ix: SegmentIndex | undefined): string | undefined {
  if (!ix) return "missing (listed, then gone)";
  if (!ix.sha256) return "its index is missing: no sha256 to check its bytes against";
  return undefined;
}

/** The seqs a hole in a WAL stream lacks, before segment `seg` (" (seq A-B)"; "" when unknown). */
const seqsBefore = (end: StreamEnd, seg: StoredSegment): string =>
  end.seq !== undefined && seg.firstSeq !== undefined && seg.firstSeq > end.seq + 1
    ? ` (seq ${end.seq + 1}-${seg.firstSeq - 1})`
    : "";

/**
 * Whether the next lines of a stream start after the cut (they and what follows are not needed),
 * from their first seq and, when known, their first time. Lines of unknown time (a hole, or a
 * segment without its index) follow those applied, which did not pass the cut: they may be at or
 * before it.
 */
function beyondCut(
  stream: string,
  firstSeq: number | undefined,
  firstTime: number | undefined,
  cut: Cut,
): boolean {
  const run = walRunOf(stream);
  if (run !== undefined && cut.run === run && cut.seq !== undefined) return firstSeq! > cut.seq;
  return firstTime !== undefined && firstTime > cut.atMs;
}

/**
 * Feeds a segment's bytes, as they come, to its cutter in whole lines and appends what it keeps:
 * memory holds a chunk and a partial line, whatever the segment's size. A break in the lines is
 * held until the segment's sha256 and length are checked, which are named first.
 */
class SegmentFeed {
  private carry: Buffer = Buffer.alloc(0);
  private seen = 0;
  private lineError?: BrokenSegment;
  constructor(
    private readonly cutter: LineCutter,
    /** Leading bytes of the segment the file already holds (from the snapshot or the segment before). */
    private readonly skip: number,
    private readonly fh: FileHandle,
    private readonly sinks: ApplySinks,
    private readonly budget: GarbageBudget,
  ) {}

  async push(chunk: Buffer): Promise<void> {
    this.budget.add(chunk.length);
    const from = Math.min(chunk.length, Math.max(0, this.skip - this.seen));
    this.seen += chunk.length;
    if (this.cutter.done || this.lineError || from === chunk.length) return;
    const part = chunk.subarray(from);
    const nl = part.lastIndexOf(0x0a);
    if (nl < 0) {
      this.carry = Buffer.concat([this.carry, part]);
      return;
    }
    const lines =
      this.carry.length > 0
        ? Buffer.concat([this.carry, part.subarray(0, nl + 1)])
        : part.subarray(0, nl + 1);
    // A copy: the chunk it comes from is not kept.
    this.carry = Buffer.from(part.subarray(nl + 1));
    await this.take(lines);
  }

  /** After the segment's checks: a held break, a last line cut short, lines not ending at `segmentTo`. */
  async end(segmentTo: number): Promise<void> {
    if (!this.cutter.done && !this.lineError && this.carry.length > 0) await this.take(this.carry);
    if (this.lineError) throw this.lineError;
    this.cutter.checkEndsAt(segmentTo);
  }

  private async take(lines: Buffer): Promise<void> {
    let keep: Buffer;
    try {
      keep = this.cutter.takeLines(lines);
    } catch (err) {
      if (!(err instanceof BrokenSegment)) throw err;
      this.lineError = err;
      return;
    }
    if (keep.length > 0) {
      // Handed on and let go before the write is awaited: held over the wait, these entries
      // would outlive a young collection and wait for a full one.
      this.sinks.onKept?.(this.cutter.kept, this.cutter.position);
      this.cutter.kept = [];
      await writeAllAt(this.fh, keep, null);
    }
    if (this.cutter.intents.length > 0) await this.sinks.onIntents?.(this.cutter.intents.splice(0));
  }
}

/** What a segment's bytes must match: its index's sha256 (of the stored bytes) and its name's length. */
interface SegmentChecks {
  sha256: string;
  length: number;
  missing: (reason: string) => BrokenSegment;
}

const shaMismatch = (c: SegmentChecks, got: string): BrokenSegment =>
  c.missing(
    `altered or truncated: sha256 ${got.slice(0, 16)}..., its index says ${c.sha256.slice(0, 16)}...`,
  );

const lengthMismatch = (c: SegmentChecks, got: number): BrokenSegment =>
  c.missing(`truncated: ${got} bytes, its name says ${c.length}`);

/** Bytes handed to the cutter at a time from a segment held whole. */
const SLICE = 1 << 20;

/**
 * Bytes read from the store at a time, where it lets us choose. A chunk read stays referenced
 * until all that is inflated from it is checked and written: 64 KiB of compressed WAL (some
 * 400 KiB of lines) outlives two young collections, so its memory is only freed by a full one and piles
 * up until then. 16 KiB chunks die young.
 */
const READ_CHUNK = 16 * 1024;

/**
 * A segment's stored bytes as a stream that `stop` destroys: a store that stops sending mid-body
 * would otherwise hold the restore, and an interrupt waiting for its failure path, for ever.
 */
async function download(store: BackupStore, key: string, stop: AbortSignal | undefined): Promise<Readable> {
  stop?.throwIfAborted();
  const body = await store.get(key, undefined, { chunkBytes: READ_CHUNK, signal: stop });
  if (!stop) return body;
  const destroy = () => body.destroy(new Error("the restore was interrupted"));
  if (stop.aborted) destroy();
  stop.addEventListener("abort", destroy, { once: true });
  body.once("close", () => stop.removeEventListener("abort", destroy));
  return body;
}

/** A plaintext segment, streamed from the store: hashed as it passes, never held whole. */
async function feedStreamed(
  store: BackupStore,
  key: string,
  feed: SegmentFeed,
  c: SegmentChecks,
  stop: AbortSignal | undefined,
) {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of await download(store, key, stop)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
    await feed.push(chunk as Buffer);
  }
  const got = hash.digest("hex");
  if (got !== c.sha256) throw shaMismatch(c, got);
  if (size !== c.length) throw lengthMismatch(c, size);
}

/**
 * A compressed plain segment, streamed from the store through its inflater: its stored bytes
 * hashed as they come, its plaintext fed as it is inflated, never held whole, and never more of
 * it than its name's length.
 */
async function feedInflated(
  store: BackupStore,
  key: string,
  compression: SegmentCompression,
  feed: SegmentFeed,
  c: SegmentChecks,
  stop: AbortSignal | undefined,
) {
  const storedHash = createHash("sha256");
  const inflater = segmentInflater(compression);
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      storedHash.update(chunk);
      done(null, chunk);
    },
  });
  const piped = pipeline(await download(store, key, stop), tap, inflater);
  piped.catch(() => {}); // its failure is the loop's below
  let size = 0;
  try {
    for await (const chunk of inflater) {
      size += (chunk as Buffer).length;
      if (size > c.length) break;
      await feed.push(chunk as Buffer);
    }
  } catch (err) {
    if (isInflateError(err))
      throw c.missing(undecodableReason(new SegmentInflateError((err as Error).message)));
    throw err;
  }
  if (size > c.length) throw lengthMismatch(c, size);
  await piped;
  const got = storedHash.digest("hex");
  if (got !== c.sha256) throw shaMismatch(c, got);
  if (size !== c.length) throw lengthMismatch(c, size);
}

/**
 * A sealed segment: authenticated whole (its format needs it), inflated when compressed, then fed
 * a slice at a time.
 */
async function feedSealed(
  store: BackupStore,
  key: string,
  codec: SegmentCodec,
  feed: SegmentFeed,
  c: SegmentChecks,
  stop: AbortSignal | undefined,
) {
  const parts: Buffer[] = [];
  for await (const chunk of await download(store, key, stop)) parts.push(chunk as Buffer);
  const stored = Buffer.concat(parts);
  const got = sha256Hex(stored);
  if (got !== c.sha256) throw shaMismatch(c, got);
  let data: Buffer;
  try {
    data = await decodeSegment(codec, stored, c.length);
  } catch (err) {
    throw c.missing(undecodableReason(err));
  }
  if (data.length !== c.length) throw lengthMismatch(c, data.length);
  for (let at = 0; at < data.length; at += SLICE) await feed.push(data.subarray(at, at + SLICE));
}

/** What a caller adds to applying a stream. */
export interface ApplySinks {
  /** How the generation stores its segments (absent: as they are; encrypted: with its key). */
  codec?: SegmentCodec;
  /** Gets the intents (committed=false) of the WAL lines kept, in seq order, as they are kept. */
  onIntents?: (intents: KeptIntent[]) => Promise<void>;
  /**
   * Gets, as lines are kept (just before they are appended), the entries `entriesWanted` picks
   * among them (in order, built by the chain check from the bytes it verified) and where the
   * stream then ends.
   */
  onKept?: (entries: WalEntry[], end: StreamEnd) => void;
  /** Which entries of the WAL lines kept `onKept` gets, from their type and committed flag. */
  entriesWanted?: EntriesWanted;
  /** Aborted: the segment being downloaded is destroyed, and the apply fails (an interrupted restore). */
  stop?: AbortSignal;
}

/** Applies `segments` (sorted by `from`) to `file`, which holds `start` (undefined: nothing). */
export async function applyStream(
  store: BackupStore,
  stream: string,
  segments: StoredSegment[],
  file: string,
  start: StreamEnd | undefined,
  cut: Cut,
  sinks: ApplySinks = {},
): Promise<Applied> {
  const { codec, onIntents } = sinks;
  const fh = await openAt(file, start?.length ?? 0);
  let end = start ?? emptyEnd(stream);
  let lastTime = 0;
  let applied = 0;
  let targetTime: number | undefined;
  // An S3 body comes in the network's chunks, read ahead through several streams: they outlive
  // young collections whatever we ask for (a folder's 16 KiB reads do not).
  const budget = new GarbageBudget();
  try {
    for (const seg of segments) {
      if (seg.to <= end.length) continue;
      const lastGood = lastTime;
      const missing = (reason: string) => new BrokenSegment(stream, seg.key, reason, lastGood);
      const ix = await readSegmentIndex(store, seg.key);
      const hole = seg.from > end.length;
      // Bytes missing before the segment (a lost object) or a segment without its index: the
      // times of their lines are unknown. They are not needed only once the lines before them
      // went past the cut (which ended the loop), or, cut by seq, start after it; else the point
      // cannot be proven whole, whatever the segments after them hold. An index written before
      // entry times were truncated (entryTimeMs) may hold its first time rounded up by 1 ms: such
      // a segment is read, and its lines decide.
      const lost = hole
        ? `missing segment before it: bytes ${end.length}-${seg.from} of ${stream}${seqsBefore(end, seg)} are not in the archive`
        : indexProblem(ix);
      const firstSeq = hole && end.seq !== undefined ? end.seq + 1 : seg.firstSeq;
      if (beyondCut(stream, firstSeq, lost ? undefined : ix!.first_time - 1, cut)) break;
      if (lost || !ix) {
        // Its lines may share the millisecond of the last line before them: the last instant
        // known whole is the one before, or, in a WAL, right after its last entry.
        const grew = end.seq !== undefined && end.seq > (start?.seq ?? -1);
        throw new BrokenSegment(
          stream,
          seg.key,
          lost!,
          lastTime > 0 ? lastTime - 1 : 0,
          grew ? end.seq : undefined,
        );
      }
      const cutter = new LineCutter(stream, seg.key, end, cut, {
        collectIntents: onIntents !== undefined,
        entriesWanted: sinks.entriesWanted,
      });
      cutter.lastTime = lastTime;
      const feed = new SegmentFeed(cutter, end.length - seg.from, fh, sinks, budget);
      const checks = { sha256: ix.sha256, length: seg.to - seg.from, missing };
      await (codec?.encrypted
        ? feedSealed(store, seg.key, codec, feed, checks, sinks.stop)
        : codec?.compression
          ? feedInflated(store, seg.key, codec.compression, feed, checks, sinks.stop)
          : feedStreamed(store, seg.key, feed, checks, sinks.stop));
      await feed.end(seg.to);
      end = cutter.position;
      lastTime = cutter.lastTime;
      targetTime = cutter.targetTime ?? targetTime;
      applied++;
      if (cutter.done) break;
    }
    await fsyncHandle(fh);
  } finally {
    await fh.close();
  }
  await fsyncDir(path.dirname(file));
  return { end, lastTime, targetTime, segments: applied };
}
