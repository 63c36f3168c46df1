/**
 * `dr list --from LOCATION --check`: every generation's continuity from names and indexes, and every
 * segment downloaded once: its size against its name, its sha256 against its index, and for a
 * WAL each entry's hash and link, at both ends too. Each problem names its segment.
 */
import { createHash } from "node:crypto";
import type { BackupStore } from "../storage/store.js";
import { BrokenSegment, LineCutter } from "./apply-segments.js";
import {
  readObject,
  readSegmentIndex,
  type ArchiveListing,
  type SegmentIndex,
  type StoredSegment,
} from "./catalog.js";
import { emptyEnd, type StreamEnd } from "./streams.js";
import { streamGaps } from "./window.js";

export interface ArchiveProblem {
  generation: string;
  stream: string;
  segment: string;
  reason: string;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Where a segment says its stream ends (to carry on checking after a broken one). */
function endOf(seg: StoredSegment, ix: SegmentIndex | undefined): StreamEnd {
  const end: StreamEnd = { length: seg.to, tail_sha256: ix?.tail_sha256 ?? "" };
  if (seg.lastSeq !== undefined) Object.assign(end, { seq: seg.lastSeq, entry_hash: ix?.last_hash });
  return end;
}

/** The problem of one segment after `end`, or undefined when it is intact and follows on. */
async function checkSegment(
  store: BackupStore,
  stream: string,
  seg: StoredSegment,
  end: StreamEnd,
  ix: SegmentIndex | undefined,
): Promise<string | undefined> {
  if (!ix) return "missing (listed, then gone)";
  const data = await readObject(store, seg.key);
  if (data.length !== seg.to - seg.from)
    return `truncated: ${data.length} bytes, its name says ${seg.to - seg.from}`;
  if (sha256(data) !== ix.sha256) return `altered: sha256 does not match its index`;
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

export async function checkArchive(store: BackupStore, listing: ArchiveListing): Promise<ArchiveProblem[]> {
  const problems: ArchiveProblem[] = [];
  for (const g of listing.generations) {
    const first = g.snapshots[0];
    for (const key of g.unindexed) {
      problems.push({
        generation: g.generation,
        stream: "",
        segment: key,
        reason: "snapshot without its index (interrupted, or the index was lost)",
      });
    }
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
        // After a hole the chain cannot be checked across it; carry on from the segment's own start.
        if (seg.from > end.length)
          end = {
            length: seg.from,
            tail_sha256: "",
            ...(seg.firstSeq !== undefined ? { seq: seg.firstSeq - 1, entry_hash: ix?.prev_hash } : {}),
          };
        const reason = await checkSegment(store, stream, seg, end, ix);
        if (reason) problems.push({ generation: g.generation, stream, segment: seg.key, reason });
        end = endOf(seg, ix);
      }
    }
  }
  return problems;
}
