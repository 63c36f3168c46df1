/**
 * Compaction of a WAL archive (docs/formats.md "Compaction"): runs of small consecutive segments
 * of one stream become one segment whose name and index prove the same continuity (byte range,
 * seq range, sha256, the hash before its first entry and of its last). The merged segment is
 * written, and read back through its index, before any small one is deleted, oldest first; so
 * a kill at any moment leaves a tiling of every stream, at worst with a merged segment overlapping
 * small ones it holds byte for byte, which restore, check and list take in either form (a byte
 * is applied once: each segment is applied from where the stream already ends). The next run
 * deletes such leftovers first.
 *
 * An encrypted generation is compacted only by a holder of its key (the archiver that writes it,
 * or `dr archive-compact` given the password or an identity): each piece is opened and checked,
 * and the merge sealed again under the same generation key (a fresh nonce), so the store never
 * holds plaintext. The archiver merges in tiers (`fanout`) so that no byte is rewritten more than
 * a few times however long it runs.
 */
import { createHash } from "node:crypto";
import { sha256Hex } from "../dr/manifest.js";
import { Readable } from "node:stream";
import type { BackupStore } from "../storage/store.js";
import { LineCutter } from "./apply-segments.js";
import {
  addSegment,
  readObject,
  sortSegments,
  readSegmentIndex,
  segmentMetadata,
  type ArchiveListing,
  type GenerationListing,
  type SegmentIndex,
  type StoredSegment,
} from "./catalog.js";
import { linkedLines } from "../wal/chain-links.js";
import { generationPrefix, parseArchiveKey, segmentKey, walRunOf } from "./names.js";
import { unlockGeneration, type ReadKeys, type SegmentKey } from "./sealing.js";
import {
  codecOf,
  decodeSegment,
  encodeSegment,
  encodes,
  undecodableReason,
  type SegmentCodec,
} from "./segment-codec.js";
import { emptyEnd, type StreamEnd } from "./streams.js";

export interface CompactOptions {
  /** A merged segment grows up to this many bytes; segments this big or bigger stay as they are. */
  targetBytes: number;
  /**
   * Tiered merging (the archiver): only `fanout` consecutive segments of one size tier (sizes
   * within the same power of `fanout`) are merged, or fewer once they fill the target. Without it
   * every run of small segments is merged (`dr archive-compact`).
   */
  fanout?: number;
  /** The keys that open encrypted generations; a generation they do not open is skipped. */
  keys?: ReadKeys;
  /** Asked before each merge: true stops the run there (the archiver is stopping). */
  stopping?: () => boolean;
  /**
   * A piece of at least this many bytes is large (default: `targetBytes / fanout`; tiered only).
   */
  largePieceBytes?: number;
  /**
   * With `fanout`, asked before each merge whose largest piece is large (`largePieceBytes`):
   * true leaves that group for a later run. The archiver defers them while its cycles ship that
   * much each: the writer is busy and its segments are large already, so a merge would rewrite
   * megabytes beside it to save a few objects.
   */
  deferLarge?: () => boolean;
  /** Called after each merged segment is stored and its small ones deleted, with its index. */
  onMerged?: (merged: MergedSegment, ix: SegmentIndex) => void;
  /**
   * The index a segment was stored with, when the caller stored it itself and was told by the
   * store that it holds it (the archiver): its pieces are then downloaded without a HEAD first.
   */
  storedIndex?: (key: string) => SegmentIndex | undefined;
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

/**
 * Another compaction (the archiver's in the background, or a `dr archive-compact` beside it) or
 * a prune got to this group first: a piece is gone. The group is left to that one, which stores
 * its merge before it deletes anything (and the same group merges to the same bytes).
 */
class Raced extends Error {}

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

/**
 * Runs of consecutive small segments, cut into groups of at most `target` bytes (2 or more each).
 * With `fanout` (tiered), a run holds only segments whose sizes are within a factor of `fanout`
 * of each other, and becomes a group once it has `fanout` pieces or the next piece would overflow
 * the target. A shorter run at the end of the chain waits for more pieces; one that something
 * else follows (a piece of another tier, a hole, a segment at the target) can never grow, so it
 * is merged as it is rather than left small for good. Most merges are then at least about twice
 * their largest piece, which bounds how often a byte is rewritten.
 */
export function mergeGroups(chain: StoredSegment[], target: number, fanout?: number): StoredSegment[][] {
  const groups: StoredSegment[][] = [];
  let run: StoredSegment[] = [];
  let bytes = 0;
  let min = Infinity;
  let max = 0;
  const close = (full: boolean) => {
    if (run.length >= 2 && (fanout === undefined || full)) groups.push(run);
    run = [];
    bytes = 0;
    min = Infinity;
    max = 0;
  };
  for (const s of chain) {
    const prev = run[run.length - 1];
    const follows =
      prev !== undefined &&
      s.from === prev.to &&
      (s.firstSeq === undefined || (prev.lastSeq !== undefined && s.firstSeq === prev.lastSeq + 1)) &&
      (fanout === undefined || Math.max(max, s.size) < fanout * Math.max(1, Math.min(min, s.size)));
    if (prev && !follows) close(true);
    else if (prev && bytes + s.size > target) close(true);
    if (s.size >= target) {
      close(true);
      continue;
    }
    run.push(s);
    bytes += s.size;
    min = Math.min(min, s.size);
    max = Math.max(max, s.size);
    if (fanout !== undefined && run.length >= fanout) close(true);
  }
  close(false);
  return groups;
}

/** Where the stream ends just before `s`, as far as checking its lines needs. */
function endBefore(stream: string, s: StoredSegment, ix: SegmentIndex): StreamEnd {
  if (s.firstSeq === undefined) return { ...emptyEnd(stream), length: s.from };
  return { length: s.from, tail_sha256: "", seq: s.firstSeq - 1, entry_hash: ix.prev_hash };
}

/**
 * A piece's plaintext, checked against its index, its seal (encrypted), its compression and its
 * name's byte range.
 */
async function readPiece(
  store: BackupStore,
  s: StoredSegment,
  codec: SegmentCodec,
  known: SegmentIndex | undefined,
) {
  const ix = known ?? (await readSegmentIndex(store, s.key));
  if (!ix) throw new Raced(`${store.describe(s.key)}: listed, then gone`);
  const stored = await readObject(store, s.key).catch(async (err: unknown) => {
    // A piece removed meanwhile shows here, whether or not a HEAD came first: another compaction
    // may delete it between our HEAD and our GET.
    if (!(await store.head(s.key))) throw new Raced(`${store.describe(s.key)}: listed, then gone`);
    throw err;
  });
  const intact = sha256Hex(stored) === ix.sha256;
  let plain = stored;
  if (intact && encodes(codec)) {
    plain = await decodeSegment(codec, stored, s.to - s.from).catch((err: unknown) => {
      throw new Error(`${store.describe(s.key)}: ${undecodableReason(err)}`);
    });
  }
  if (!intact || plain.length !== s.to - s.from)
    throw new Error(`${store.describe(s.key)}: does not match its index or name; run dr list --from --check`);
  return { ix, plain };
}

/**
 * Merging runs beside the archiver's cycles in the same event loop: its CPU work is done in
 * slices of this size with a turn of the loop between them, so a cycle due meanwhile starts
 * within a slice's time, not a whole merge's.
 */
const SLICE_BYTES = 256 * 1024;
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** `data` in slices of about SLICE_BYTES, each ending at a line end (the last: where `data` ends). */
function* lineSlices(data: Buffer): Generator<Buffer> {
  for (let start = 0; start < data.length;) {
    let end = data.length;
    if (start + SLICE_BYTES < data.length) {
      const nl = data.lastIndexOf(0x0a, start + SLICE_BYTES);
      end = nl >= start ? nl + 1 : data.indexOf(0x0a, start + SLICE_BYTES) + 1 || data.length;
    }
    yield data.subarray(start, end);
    start = end;
  }
}

/** sha256 of `parts` in slices (see SLICE_BYTES). */
async function sha256Sliced(parts: Buffer[]): Promise<string> {
  const h = createHash("sha256");
  for (const p of parts)
    for (let at = 0; at < p.length; at += SLICE_BYTES) {
      h.update(p.subarray(at, at + SLICE_BYTES));
      await yieldToLoop();
    }
  return h.digest("hex");
}

/**
 * Where a piece ends when its lines follow on from `end` by their frames (as the shipper reads
 * them, docs/formats.md "What a WAL segment proves when it is shipped"): a log's piece ends with a
 * whole line; a WAL piece's lines link on from `end` and its last seq and hash are those of its
 * name and index. Undefined when that is not so: the lines are then checked one by one.
 */
function followsOn(stream: string, s: StoredSegment, ix: SegmentIndex, plain: Buffer, end: StreamEnd) {
  if (end.length !== s.from || (plain.length > 0 && plain[plain.length - 1] !== 0x0a)) return undefined;
  const next: StreamEnd = { length: s.to, tail_sha256: ix.tail_sha256 };
  if (s.firstSeq === undefined) return walRunOf(stream) === undefined ? next : undefined;
  if (end.seq === undefined || end.entry_hash === undefined || ix.prev_hash !== end.entry_hash)
    return undefined;
  const links = linkedLines(plain, { seq: end.seq, hash: end.entry_hash });
  if (
    !links ||
    links.firstSeq !== s.firstSeq ||
    links.lastSeq !== s.lastSeq ||
    links.lastHash !== ix.last_hash
  )
    return undefined;
  return { ...next, seq: links.lastSeq, entry_hash: links.lastHash };
}

/**
 * Reads a group's pieces, each checked against its index, and proves the chain they make
 * together: every line whole, every WAL entry linked from the first one's prev_hash to the last
 * one's hash by its seq and hash fields (followsOn); a piece that does not follow on by its frames
 * has each entry parsed and hashed, which names the break.
 */
async function readGroup(
  store: BackupStore,
  stream: string,
  group: StoredSegment[],
  codec: SegmentCodec,
  storedIndex: CompactOptions["storedIndex"],
) {
  const parts: Buffer[] = [];
  const ixs: SegmentIndex[] = [];
  let end: StreamEnd | undefined;
  for (const s of group) {
    const { ix, plain } = await readPiece(store, s, codec, storedIndex?.(s.key));
    end ??= endBefore(stream, s, ix);
    end = followsOn(stream, s, ix, plain, end) ?? (await checkLines(stream, s, plain, end));
    parts.push(plain);
    ixs.push(ix);
  }
  return { parts, ixs };
}

/** A piece's lines checked one by one after `end` (in slices, see SLICE_BYTES); where it ends. */
async function checkLines(
  stream: string,
  s: StoredSegment,
  plain: Buffer,
  end: StreamEnd,
): Promise<StreamEnd> {
  const cutter = new LineCutter(stream, s.key, end, { atMs: Number.MAX_SAFE_INTEGER });
  let at = s.from;
  for (const slice of lineSlices(plain)) {
    at += slice.length;
    cutter.take(slice, at);
    await yieldToLoop();
  }
  return cutter.position;
}

/** Reads a group, checks it (readGroup), and stores the merge. */
async function mergeGroup(
  store: BackupStore,
  gen: string,
  stream: string,
  group: StoredSegment[],
  codec: SegmentCodec,
  storedIndex: CompactOptions["storedIndex"],
) {
  const { parts, ixs } = await readGroup(store, stream, group, codec, storedIndex);
  const first = group[0]!;
  const last = group[group.length - 1]!;
  // For the index of a merge stored as it is, or the seal's nonce; a merge only compressed needs neither.
  const plainSha = codec.compression && !codec.encrypted ? undefined : await sha256Sliced(parts);
  const lastIx = ixs[ixs.length - 1]!;
  const times = ixs.map((i) => i.first_time).filter((t) => t > 0);
  const name = segmentKey({
    generation: gen,
    stream,
    from: first.from,
    to: last.to,
    ...(first.firstSeq !== undefined ? { firstSeq: first.firstSeq, lastSeq: last.lastSeq } : {}),
  });
  // Each piece's capture instant held for the bytes up to it; the newest holds for them all.
  const capturedAt = Math.max(...ixs.map((i) => i.captured_at));
  const lastTime = Math.max(...ixs.map((i) => i.last_time));
  // Compressed and sealed again as any segment of this name and content (segment-codec.ts).
  const stored = encodes(codec)
    ? [await encodeSegment(codec, parts, { name, plainSha256: plainSha, timeMs: lastTime })]
    : parts;
  const ix: SegmentIndex = {
    sha256: encodes(codec) ? await sha256Sliced(stored) : plainSha!,
    // As the shipper: a plaintext hash only for a merge stored as it is.
    ...(encodes(codec) ? {} : { plain_sha256: plainSha! }),
    captured_at: capturedAt,
    tail_sha256: lastIx.tail_sha256,
    first_time: times.length ? Math.min(...times) : 0,
    last_time: lastTime,
    ...(ixs[0]!.prev_hash !== undefined ? { prev_hash: ixs[0]!.prev_hash, last_hash: lastIx.last_hash } : {}),
  };
  const size = stored.reduce((n, b) => n + b.length, 0);
  await store.put(name, Readable.from(stored), {
    sha256: ix.sha256,
    sha256OfSource: true,
    size,
    metadata: segmentMetadata(ix),
  });
  const back = await readSegmentIndex(store, name);
  if (back?.sha256 !== ix.sha256)
    throw new Error(`${store.describe(name)}: not readable back after storing it`);
  return { key: name, bytes: size, ix };
}

/** A group with a large piece (`largePieceBytes`, by default 1/fanout of the target; tiered runs only). */
const isLarge = (group: StoredSegment[], opts: CompactOptions): boolean =>
  opts.fanout !== undefined &&
  group.some((s) => s.size >= (opts.largePieceBytes ?? opts.targetBytes / opts.fanout!));

async function compactGeneration(
  store: BackupStore,
  g: GenerationListing,
  codec: SegmentCodec,
  opts: CompactOptions,
  result: CompactResult,
): Promise<void> {
  for (const [stream, list] of g.segments) {
    if (opts.stopping?.()) return;
    const { chain: stored, covered } = redundant(list);
    // A merge is read, checked and written in memory: a compressed generation's pieces are
    // sized by their plaintext, so a merge holds at most the target in memory as any other.
    const chain = codec.compression ? stored.map((s) => ({ ...s, size: s.to - s.from })) : stored;
    for (const { segment, holder } of covered.sort((a, b) => a.segment.from - b.segment.from)) {
      // Only once the segment that holds its bytes is there with its index.
      if (!(await readSegmentIndex(store, holder.key))) continue;
      await store.delete(segment.key);
      result.leftovers.push(segment.key);
    }
    for (const group of mergeGroups(chain, opts.targetBytes, opts.fanout)) {
      if (opts.stopping?.()) return;
      if (isLarge(group, opts) && opts.deferLarge?.()) continue;
      const merged = await mergeGroup(store, g.generation, stream, group, codec, opts.storedIndex).catch(
        (err: unknown) => {
          if (err instanceof Raced) return undefined;
          throw err;
        },
      );
      if (!merged) continue;
      for (const s of group) await store.delete(s.key);
      const m: MergedSegment = {
        generation: g.generation,
        stream,
        key: merged.key,
        bytes: merged.bytes,
        replaced: group.map((s) => s.key),
      };
      result.merged.push(m);
      opts.onMerged?.(m, merged.ix);
    }
  }
}

const countSegments = (gens: GenerationListing[]): number =>
  gens.reduce((n, g) => n + [...g.segments.values()].reduce((m, s) => m + s.length, 0), 0);

function newResult(gens: GenerationListing[]): CompactResult {
  return { merged: [], leftovers: [], skipped: [], segments_before: countSegments(gens), segments_after: 0 };
}

function settle(result: CompactResult): CompactResult {
  result.segments_after =
    result.segments_before -
    result.leftovers.length -
    result.merged.reduce((n, m) => n + m.replaced.length - 1, 0);
  return result;
}

/**
 * The key of an encrypted generation from `keys`, or why it is skipped (no key of its kind).
 * A key of its kind that does not open it is the user's error (exit 4), as for restore.
 */
async function keyOf(g: GenerationListing, keys: ReadKeys): Promise<{ key?: SegmentKey } | { skip: string }> {
  if (!g.record?.encrypted) return {};
  const enc = g.record.encryption;
  const held = enc?.scheme === "age" ? keys.identities?.length : keys.password !== undefined;
  if (!enc || !held)
    return {
      skip: `encrypted (${enc?.scheme === "age" ? "age recipients: give --identity-file" : "password: give --password-file"} to compact it)`,
    };
  return { key: await unlockGeneration(g.generation, enc, keys) };
}

/** Compacts every generation of `listing` whose key is held (plain ones always). */
export async function compactArchive(
  store: BackupStore,
  listing: ArchiveListing,
  opts: CompactOptions,
): Promise<CompactResult> {
  const result = newResult(listing.generations);
  for (const g of listing.generations) {
    if (!g.record) {
      result.skipped.push({
        generation: g.generation,
        reason: `its record is ${g.recordProblem ?? "missing"}`,
      });
      continue;
    }
    const k = await keyOf(g, opts.keys ?? {});
    if ("skip" in k) result.skipped.push({ generation: g.generation, reason: k.skip });
    else await compactGeneration(store, g, codecOf(g.record, k.key), opts, result);
  }
  return settle(result);
}

/**
 * Compacts one generation with the codec (and key) its writer holds (the archiver): lists its
 * segments only, reads no record.
 */
export async function compactOwnGeneration(
  store: BackupStore,
  generation: string,
  codec: SegmentCodec,
  opts: CompactOptions,
): Promise<CompactResult> {
  const g: GenerationListing = {
    generation,
    snapshots: [],
    unindexed: [],
    damaged: [],
    refused: [],
    segments: new Map(),
  };
  for (const obj of await store.list(generationPrefix(generation))) {
    const k = parseArchiveKey(obj.key);
    if (k?.kind === "segment" && k.generation === generation) addSegment(g, k, obj);
  }
  sortSegments(g);
  const result = newResult([g]);
  await compactGeneration(store, g, codec, opts, result);
  return settle(result);
}
