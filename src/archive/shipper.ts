/**
 * One shipping cycle: the new durable bytes of every stream become immutable segments. Logs go
 * first and WAL runs last, so a WAL segment's `captured_at` proves every stream was shipped up
 * to that instant (the window's end, docs/formats.md). A failed put leaves the stream's end
 * where it was: the next cycle sends the same bytes again, under the same name.
 */
import { sha256Hex } from "../dr/manifest.js";
import { statSync, type BigIntStats } from "node:fs";
import { Readable } from "node:stream";
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import type { HeldBackBytes } from "./archive-status.js";
import { segmentMetadata, type SegmentIndex } from "./catalog.js";
import path from "node:path";
import { isRunClosed } from "../wal/recovery.js";
import { segmentKey, walRunOf } from "./names.js";
import { encodeSegment, encodes, type SegmentCodec } from "./segment-codec.js";
import {
  continuesAt,
  listStreams,
  openStream,
  readDurableFrom,
  type DurableChunk,
  type ReadBuffer,
  type StreamEnd,
} from "./streams.js";
import { emptyEnd } from "./streams.js";
import { segmentReach } from "./window.js";

export class ContinuityLost extends Error {}

export interface CycleResult {
  segments: number;
  /** The streams' bytes shipped (the segments' plaintext). */
  bytes: number;
  /** What the store was given for them (compressed, sealed). */
  storedBytes: number;
  /** Durable bytes not shipped (incomplete lines, an entry that does not verify). */
  pending: number;
  /** The newest WAL position shipped per run. */
  wal: Record<string, number>;
  /** Per WAL run, how many bytes of its file the store holds. */
  walBytes: Record<string, number>;
  /** WAL runs whose durable bytes end in something that cannot be shipped (yet). */
  held: HeldBack[];
  /** The newest instant the segments stored vouch for (window.ts segmentReach; 0: none). */
  reach: number;
}

/**
 * Held-back bytes as a cycle finds them. `damage`: a valid entry follows the bad line, or the run
 * is closed, so no restart of the writer cuts it (docs/wal.md); otherwise it is the torn tail of
 * an open run, held back until it becomes valid or `start` cuts it.
 */
export interface HeldBack extends HeldBackBytes {
  /** What failed, in words (the first held line's check; none: only a line without its newline). */
  failure: string | null;
  /** The seq the first held line claims (null: it does not parse). */
  claimed_seq: number | null;
  /** A valid entry after the bad line (damage), null: none. */
  valid_seq_after: number | null;
  closed: boolean;
}

export interface ShipperTarget {
  store: BackupStore;
  ws: Workspace;
  generation: string;
  ends: Map<string, StreamEnd>;
  /** How the generation stores its segments (GenerationState.codec). */
  codec: SegmentCodec;
  /** Called after each stored segment, with the index it was stored with. */
  onSegment?: (key: string, chunk: DurableChunk, ix: SegmentIndex) => void;
  /** Per stream, the put that failed last (kept across cycles by the caller). */
  unsettled?: Map<string, UnsettledPut>;
  /** Reused for every read (kept across cycles by the caller); one cycle at a time uses it. */
  readBuffer?: ReadBuffer;
  /** Per stream, the file as a cycle last found it wholly shipped (kept across cycles by the caller). */
  settled?: Map<string, SettledStream>;
}

/**
 * A stream found wholly shipped, with its file as it was then. While the file keeps its inode,
 * size and times, and the archive the same end, a cycle passes it with one stat instead of
 * opening it, checking its continuity and taking its size: a workspace holds dozens of finished
 * WAL runs and daily logs that never change again. A file whose times are less than QUIET_NS
 * before the cycle looked is not recorded: a later write in the same tick of the file system's
 * clock, or within the same stamp of a coarse file system (FAT's times are two seconds apart),
 * can leave its times as they were.
 */
export interface SettledStream {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** The archived end the file was found at. */
  length: number;
  tail_sha256: string;
}

const QUIET_NS = 2_000_000_000n;

/** Whether `file` is still as it was when `stream` was found settled at the end `after`. */
function stillSettled(t: ShipperTarget, stream: string, file: string, after: StreamEnd): boolean {
  const s = t.settled?.get(stream);
  if (!s || s.length !== after.length || s.tail_sha256 !== after.tail_sha256) return false;
  // Synchronous: one stat per settled stream and cycle, dozens of them, each a few microseconds
  // here against tens as a thread-pool round trip (the archiver runs on its own thread or process).
  let st: BigIntStats | undefined;
  try {
    st = statSync(file, { bigint: true, throwIfNoEntry: false });
  } catch {
    return false; // the cycle's own open reports it
  }
  return (
    st !== undefined &&
    st.dev === s.dev &&
    st.ino === s.ino &&
    st.size === s.size &&
    st.mtimeNs === s.mtimeNs &&
    st.ctimeNs === s.ctimeNs
  );
}

/** Records `stream` as settled when all of `st` is shipped and the file was quiet when looked at. */
function settle(
  t: ShipperTarget,
  stream: string,
  st: BigIntStats,
  lookedAtMs: number,
  after: StreamEnd,
): void {
  const changedNs = st.ctimeNs > st.mtimeNs ? st.ctimeNs : st.mtimeNs;
  if (
    !t.settled ||
    after.length !== Number(st.size) ||
    changedNs > BigInt(lookedAtMs) * 1_000_000n - QUIET_NS
  )
    return;
  t.settled.set(stream, {
    dev: st.dev,
    ino: st.ino,
    size: st.size,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    length: after.length,
    tail_sha256: after.tail_sha256,
  });
}

/**
 * A segment whose put failed: the store may hold it all the same (the answer was lost). Sent
 * again under the same name, it is sent as it was (the same seal, the same index), so a name
 * never holds two different sealings of one plaintext.
 */
export interface UnsettledPut {
  key: string;
  stored: Buffer;
  ix: SegmentIndex;
}

/** A file the store holds bytes of is gone from the workspace. */
const removed = (stream: string, end: StreamEnd): ContinuityLost =>
  new ContinuityLost(`${stream} was removed after ${end.length} bytes of it were archived`);

/**
 * Ships everything durable now. Throws ContinuityLost when a stream no longer holds what was
 * shipped (the workspace was restored or rolled back under the archiver, or the file removed),
 * and the store's error when a put fails after its retries.
 */
export async function shipCycle(t: ShipperTarget, maxSegmentBytes?: number): Promise<CycleResult> {
  const capturedAt = Date.now();
  const result: CycleResult = {
    segments: 0,
    bytes: 0,
    storedBytes: 0,
    pending: 0,
    wal: {},
    walBytes: {},
    held: [],
    reach: 0,
  };
  const streams = await listStreams(t.ws.root);
  const listed = new Set(streams);
  // A file the store holds bytes of, gone from the workspace: a restore to any later point
  // would bring it back from this generation, so the history this generation holds has ended
  // (as a restart finds it: generation.ts `broken`).
  for (const [stream, end] of t.ends) if (end.length > 0 && !listed.has(stream)) throw removed(stream, end);
  // A file gone from the workspace is no longer looked at: its settled record goes with it.
  if (t.settled?.size)
    for (const stream of t.settled.keys()) if (!listed.has(stream)) t.settled.delete(stream);
  for (const stream of streams) {
    const file = t.ws.p(stream);
    let after = t.ends.get(stream) ?? emptyEnd(stream);
    const run = walRunOf(stream);
    if (stillSettled(t, stream, file, after)) {
      if (run !== undefined) shippedRun(result, run, after);
      continue;
    }
    t.settled?.delete(stream);
    const lost = () =>
      new ContinuityLost(`${stream} no longer holds the ${after.length} bytes already archived`);
    // One descriptor per stream and cycle: its continuity check and its reads.
    const fh = await openStream(file);
    if (!fh) {
      // Removed since the listing.
      if (after.length > 0) throw removed(stream, after);
      continue; // nothing of it archived
    }
    let held: DurableChunk["held"];
    let heldBytes = 0;
    try {
      const lookedAt = Date.now();
      const st = await fh.stat({ bigint: true });
      let size: number | undefined = Number(st.size);
      if (!(await continuesAt(fh, after, size))) throw lost();
      for (;;) {
        const chunk = await readDurableFrom(fh, stream, after, maxSegmentBytes, size, t.readBuffer);
        size = undefined; // a later read of the cycle takes the size again
        if (!chunk) break; // cut shorter since the check (a later cycle's continuity check judges)
        result.pending += chunk.pending;
        held = chunk.held;
        heldBytes = chunk.pending;
        if (chunk.bytes.length === 0) break;
        const put = await putSegment(t, stream, chunk, capturedAt);
        result.storedBytes += put.stored.length;
        result.reach = Math.max(result.reach, segmentReach(stream, put.ix));
        t.ends.set(stream, chunk.end);
        after = chunk.end;
        result.segments++;
        result.bytes += chunk.bytes.length;
        if (!chunk.more) break;
        result.pending -= chunk.pending;
      }
      settle(t, stream, st, lookedAt, after);
    } finally {
      await fh.close();
    }
    if (run !== undefined) shippedRun(result, run, after);
    if (run !== undefined && held) {
      const closed = await isRunClosed(path.dirname(file), run);
      result.held.push({
        stream,
        run,
        after_seq: after.seq ?? -1,
        offset: after.length,
        bytes: heldBytes,
        lines: held.lines,
        damage: closed || held.validAfter !== undefined,
        failure: held.failure ?? null,
        claimed_seq: held.claimedSeq ?? null,
        valid_seq_after: held.validAfter ?? null,
        closed,
      });
    }
  }
  return result;
}

function shippedRun(result: CycleResult, run: string, end: StreamEnd): void {
  result.wal[run] = end.seq ?? -1;
  result.walBytes[run] = end.length;
}

/** Stores `chunk` as a segment: what was stored. */
async function putSegment(
  t: ShipperTarget,
  stream: string,
  chunk: DurableChunk,
  capturedAt: number,
): Promise<UnsettledPut> {
  const key = segmentKey({
    generation: t.generation,
    stream,
    from: chunk.from,
    to: chunk.end.length,
    ...(chunk.firstSeq !== undefined ? { firstSeq: chunk.firstSeq, lastSeq: chunk.end.seq } : {}),
  });
  const again = t.unsettled?.get(stream);
  // The earlier attempt's index stays true: the same bytes were all that was durable then.
  const put = again?.key === key ? again : await encoded(t, key, chunk, capturedAt);
  try {
    await t.store.put(key, Readable.from([put.stored]), {
      sha256: put.ix.sha256,
      sha256OfSource: true,
      size: put.stored.length,
      metadata: segmentMetadata(put.ix),
    });
  } catch (err) {
    // A plain segment's bytes are a view of the read buffer. They are sent again only under the
    // same name, so for the same range, which the next cycle reads again into the same place
    // before this put is repeated (or, when the buffer grew, into new memory: this view keeps the
    // old one, which nothing writes to any more).
    t.unsettled?.set(stream, put);
    throw err;
  }
  t.unsettled?.delete(stream);
  t.onSegment?.(key, chunk, put.ix);
  return put;
}

/** What is stored for `chunk`: its bytes (compressed, sealed, as the generation says) and its index. */
async function encoded(
  t: ShipperTarget,
  key: string,
  chunk: DurableChunk,
  capturedAt: number,
): Promise<UnsettledPut> {
  // The Fernet timestamp is the newest line's time, fixed by the plaintext as the name is (the
  // capture instant is not): a restarted archiver seals a range it sends again to the same bytes.
  const stored = await encodeSegment(t.codec, [chunk.bytes], { name: key, timeMs: chunk.lastTime });
  const storedSha = sha256Hex(stored);
  const ix: SegmentIndex = {
    sha256: storedSha,
    // Only for a segment stored as it is. The stored bytes' hash fixes a compressed one's plaintext
    // too; a sealed one's is authenticated by its seal, and a hash of it would only let a reader
    // without the key confirm a guess of the whole content.
    ...(encodes(t.codec) ? {} : { plain_sha256: storedSha }),
    // Only a stream's last segment of a cycle vouches for the instant (see the top of the file),
    // never for one before its own newest line: the writer's clock (another process's, or a
    // monotonic one drifting from the wall clock) may run ahead of this one, and a point at
    // captured_at must still hold every line the segment carries.
    captured_at: chunk.more ? 0 : Math.max(capturedAt, chunk.lastTime),
    tail_sha256: chunk.end.tail_sha256,
    first_time: chunk.firstTime,
    last_time: chunk.lastTime,
  };
  if (chunk.prevHash !== undefined) {
    ix.prev_hash = chunk.prevHash;
    ix.last_hash = chunk.end.entry_hash;
  }
  return { key, stored, ix };
}
