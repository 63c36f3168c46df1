/**
 * `dr list --from LOCATION --check`: every generation's continuity from names and indexes, and every
 * segment downloaded once: its size against its name, its sha256 against its index, and for a
 * WAL each entry's hash and link, at both ends too. Each problem names its segment.
 */
import { createHash } from "node:crypto";
import { sha256Hex } from "../dr/manifest.js";
import type { BackupStore } from "../storage/store.js";
import { BrokenSegment, LineCutter, indexProblem } from "./apply-segments.js";
import {
  readObject,
  readSegmentIndex,
  snapshotObjectProblem,
  type ArchiveListing,
  type SegmentIndex,
  type SnapshotIndex,
  type StoredSegment,
} from "./catalog.js";
import { generationKey } from "./names.js";
import { unlockGeneration, type GenerationEncryption, type ReadKeys } from "./sealing.js";
import { codecOf, decodeSegment, encodes, undecodableReason, type SegmentCodec } from "./segment-codec.js";
import { emptyEnd, type StreamEnd } from "./streams.js";
import { streamGaps } from "./window.js";

export interface ArchiveProblem {
  generation: string;
  stream: string;
  segment: string;
  reason: string;
}

/** The end after a segment whose index is lost: where its successor's check starts afresh. */
const LOST = "lost";

/** Where a segment says its stream ends (to carry on checking after a broken one). */
function endOf(seg: StoredSegment, ix: SegmentIndex | undefined): StreamEnd {
  const end: StreamEnd = { length: seg.to, tail_sha256: ix?.tail_sha256 ?? "" };
  if (seg.lastSeq !== undefined) Object.assign(end, { seq: seg.lastSeq, entry_hash: ix?.last_hash });
  return end;
}

/**
 * The plaintext to check lines in: the stored bytes of a plain segment, the inflated or opened
 * ones of a compressed or sealed segment; a string for a problem; null for a sealed segment checked
 * without its key (then its ciphertext's sha256 and its link to the one before, from its index,
 * are all there is).
 */
async function contentOf(
  seg: StoredSegment,
  stored: Buffer,
  end: StreamEnd,
  ix: SegmentIndex,
  codec: SegmentCodec,
): Promise<Buffer | string | null> {
  const length = seg.to - seg.from;
  if (!encodes(codec)) {
    if (stored.length !== length) return `truncated: ${stored.length} bytes, its name says ${length}`;
    if (sha256Hex(stored) !== ix.sha256) return `altered: sha256 does not match its index`;
    return stored;
  }
  if (sha256Hex(stored) !== ix.sha256) return `altered or truncated: sha256 does not match its index`;
  if (codec.encrypted && !codec.key) {
    if (seg.firstSeq !== undefined && end.entry_hash !== undefined && ix.prev_hash !== end.entry_hash)
      return `its first entry does not link to seq ${end.seq} (prev_hash in its index)`;
    return null;
  }
  let data: Buffer;
  try {
    data = await decodeSegment(codec, stored, length);
  } catch (err) {
    return undecodableReason(err);
  }
  if (data.length !== length) return `truncated: ${data.length} bytes, its name says ${length}`;
  return data;
}

/** The problem of one segment after `end`, or undefined when it is intact and follows on. */
async function checkSegment(
  store: BackupStore,
  stream: string,
  seg: StoredSegment,
  end: StreamEnd,
  ix: SegmentIndex | undefined,
  codec: SegmentCodec,
): Promise<string | undefined> {
  const lost = indexProblem(ix);
  if (lost || !ix) return lost;
  const data = await contentOf(seg, await readObject(store, seg.key), end, ix, codec);
  if (typeof data === "string") return data;
  if (data === null) return undefined;
  try {
    new LineCutter(stream, seg.key, end, { atMs: Number.MAX_SAFE_INTEGER }).take(
      data.subarray(end.length - seg.from),
      seg.to,
    );
  } catch (err) {
    if (err instanceof BrokenSegment) return err.message.slice(seg.key.length + 2);
    throw err;
  }
  return undefined;
}

/** Why a snapshot's archive is not the one its index describes: missing, resized or altered. */
async function checkSnapshot(store: BackupStore, idx: SnapshotIndex): Promise<string | undefined> {
  const problem = await snapshotObjectProblem(store, idx);
  if (problem) return problem;
  const hash = createHash("sha256");
  for await (const chunk of await store.get(idx.key)) hash.update(chunk as Buffer);
  return hash.digest("hex") === idx.sha256 ? undefined : "altered: sha256 does not match its index";
}

const holdsKeyFor = (enc: GenerationEncryption, keys: ReadKeys | undefined): boolean =>
  enc.scheme === "fernet" ? keys?.password !== undefined : (keys?.identities?.length ?? 0) > 0;

export interface ArchiveCheck {
  problems: ArchiveProblem[];
  /** Encrypted generations checked without their key: their segments' sha256 and links only, not their lines. */
  unopened: { generation: string; scheme: GenerationEncryption["scheme"] }[];
}

/**
 * With `keys`, an encrypted generation's segments are opened and their lines checked (a wrong
 * password or identity: exit 4); without, only what the names and indexes carry (`unopened`).
 */
export async function checkArchive(
  store: BackupStore,
  listing: ArchiveListing,
  keys?: ReadKeys,
): Promise<ArchiveCheck> {
  const problems: ArchiveProblem[] = [];
  const unopened: ArchiveCheck["unopened"] = [];
  for (const g of listing.generations) {
    const problem = (segment: string, reason: string, stream = ""): void => {
      problems.push({ generation: g.generation, stream, segment, reason });
    };
    for (const d of g.damaged) problem(d.key, `snapshot index: ${d.reason}`);
    for (const r of g.refused) problem(r.key, `not a segment: ${r.reason}`);
    for (const key of g.unindexed)
      problem(key, "snapshot without its index (interrupted, or the index was lost)");
    for (const idx of g.snapshots) {
      const reason = await checkSnapshot(store, idx);
      if (reason) problem(idx.key, `snapshot: ${reason}`);
    }
    if (!g.record) {
      problem(
        generationKey(g.generation),
        `generation record: ${g.recordProblem ?? "missing"} (how its segments are stored: they were not read)`,
      );
      continue;
    }
    const enc = g.record.encryption;
    const opened = enc && holdsKeyFor(enc, keys);
    if (enc && !opened && g.segments.size > 0)
      unopened.push({ generation: g.generation, scheme: enc.scheme });
    const codec = codecOf(g.record, opened ? await unlockGeneration(g.generation, enc, keys!) : undefined);
    const first = g.snapshots[0];
    for (const [stream, segments] of g.segments) {
      const start = first?.streams[stream];
      for (const gap of streamGaps(stream, segments, start?.length ?? 0)) {
        problems.push({
          generation: g.generation,
          stream,
          segment: gap.next ?? stream,
          reason: `missing before it: ${gap.cause}`,
        });
      }
      let end = start ?? emptyEnd(stream);
      for (const seg of segments) {
        if (seg.to <= end.length) continue;
        const ix = await readSegmentIndex(store, seg.key);
        // After a hole, or a segment whose index is lost, the chain cannot be checked across it;
        // carry on from the segment's own start.
        if (seg.from > end.length || end.tail_sha256 === LOST)
          end = {
            length: seg.from,
            tail_sha256: "",
            ...(seg.firstSeq !== undefined ? { seq: seg.firstSeq - 1, entry_hash: ix?.prev_hash } : {}),
          };
        const reason = await checkSegment(store, stream, seg, end, ix, codec);
        if (reason) problems.push({ generation: g.generation, stream, segment: seg.key, reason });
        end = indexProblem(ix) ? { length: seg.to, tail_sha256: LOST } : endOf(seg, ix);
      }
    }
  }
  return { problems, unopened };
}
