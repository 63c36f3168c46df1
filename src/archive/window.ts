/**
 * A generation's restorable window and its continuity, from names and indexes alone (no
 * payload): per stream the segments must tile the bytes from the first snapshot's end with no
 * hole, and a WAL's seq ranges must follow each other. The window runs from the first
 * snapshot's completion to the newest WAL segment's capture (docs/formats.md "Window"), and
 * ends early at a hole.
 */
import type { BackupStore } from "../storage/store.js";
import {
  readSegmentIndex,
  type GenerationListing,
  type SegmentIndex,
  type StoredSegment,
} from "./catalog.js";
import { walRunOf } from "./names.js";

export interface Gap {
  stream: string;
  /** The byte range the archive lacks. */
  from: number;
  to: number;
  /** The segment after the hole (its key), or null when the hole is at the end. */
  next: string | null;
  cause: string;
}

export interface GenerationWindow {
  generation: string;
  /** Epoch ms; null when the generation has no complete snapshot (nothing restorable). */
  earliest: number | null;
  latest: number | null;
  gaps: Gap[];
  snapshots: number;
  segments: number;
}

/** Holes in the tiling of one stream, from `start` (the first snapshot's end). */
export function streamGaps(stream: string, segments: StoredSegment[], start: number): Gap[] {
  const gaps: Gap[] = [];
  let at = start;
  let lastSeq: number | undefined;
  for (const s of segments) {
    if (s.to <= at) continue;
    if (s.from > at) {
      gaps.push({ stream, from: at, to: s.from, next: s.key, cause: `missing bytes ${at}-${s.from}` });
    } else if (
      s.firstSeq !== undefined &&
      lastSeq !== undefined &&
      s.from === at &&
      s.firstSeq !== lastSeq + 1
    ) {
      gaps.push({
        stream,
        from: at,
        to: at,
        next: s.key,
        cause: `seq ${lastSeq + 1} expected, segment starts at ${s.firstSeq}`,
      });
    }
    at = s.to;
    if (s.lastSeq !== undefined) lastSeq = s.lastSeq;
  }
  return gaps;
}

/** A segment's index by its key (readSegmentIndex, or one a caller already holds). */
export type IndexOf = (key: string) => Promise<SegmentIndex | undefined>;

/**
 * The instant a stored segment vouches for (0: none): a WAL segment's capture, as the last of its
 * stream in a cycle (docs/formats.md "Window"); another stream's segment, none.
 */
export const segmentReach = (stream: string, ix: Pick<SegmentIndex, "captured_at">): number =>
  walRunOf(stream) !== undefined ? ix.captured_at : 0;

/** The newest instant a stream's segments vouch for (0: none). */
async function streamReach(stream: string, segments: StoredSegment[], indexOf: IndexOf): Promise<number> {
  if (walRunOf(stream) === undefined) return 0;
  for (let i = segments.length - 1; i >= 0; i--) {
    const ix = await indexOf(segments[i]!.key);
    const reach = ix ? segmentReach(stream, ix) : 0;
    if (reach > 0) return reach;
  }
  return 0;
}

/**
 * The newest restorable instant of a generation (null: no complete snapshot): its newest
 * snapshot's completion or the newest capture its WAL segments vouch for, whichever is later.
 * `dr list`, the restore's window and the archiver's status (`window_end_at`, the metric) all
 * take it from here; the archiver then moves it on by segmentReach as it stores.
 */
export async function windowEnd(g: GenerationListing, indexOf: IndexOf): Promise<number | null> {
  if (g.snapshots.length === 0) return null;
  let latest = g.snapshots[g.snapshots.length - 1]!.completed_at;
  for (const [stream, list] of g.segments)
    latest = Math.max(latest, await streamReach(stream, list, indexOf));
  return latest;
}

export async function generationWindow(store: BackupStore, g: GenerationListing): Promise<GenerationWindow> {
  const first = g.snapshots[0];
  let segments = 0;
  for (const list of g.segments.values()) segments += list.length;
  const out: GenerationWindow = {
    generation: g.generation,
    earliest: first ? first.completed_at : null,
    latest: null,
    gaps: [],
    snapshots: g.snapshots.length,
    segments,
  };
  if (!first) return out;
  for (const [stream, list] of g.segments)
    out.gaps.push(...streamGaps(stream, list, first.streams[stream]?.length ?? 0));
  // A hole does not shorten the window: a point past it is refused (exit 5) by the restore, naming it.
  out.latest = await windowEnd(g, (key) => readSegmentIndex(store, key));
  return out;
}

export const formatWindow = (w: GenerationWindow): string =>
  w.earliest === null
    ? `${w.generation}: no complete base snapshot`
    : `${w.generation}: ${new Date(w.earliest).toISOString()} .. ${new Date(w.latest!).toISOString()}`;

/** A window as `--json` gives it (as dr list --from does): instants as ISO times, null without a base snapshot. */
export interface WindowJson {
  generation: string;
  earliest: string | null;
  latest: string | null;
  segments: number;
  gaps: Gap[];
}

export const windowJson = (w: GenerationWindow): WindowJson => ({
  generation: w.generation,
  earliest: w.earliest === null ? null : new Date(w.earliest).toISOString(),
  latest: w.latest === null ? null : new Date(w.latest).toISOString(),
  segments: w.segments,
  gaps: w.gaps,
});
