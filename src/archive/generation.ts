/**
 * Which generation an archiver writes to: the newest one of this workspace when the workspace
 * still holds every byte it archived (then shipping resumes exactly where the store ends), else
 * a new one that names the previous generation and why continuity could not be proven.
 */
import os from "node:os";
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import {
  GENERATION_FORMAT,
  listArchive,
  putJson,
  readSegmentIndex,
  type GenerationListing,
  type GenerationRecord,
  type SnapshotIndex,
} from "./catalog.js";
import { generationKey, newGenerationId } from "./names.js";
import { emptyEnd, stillContinues, type StreamEnd } from "./streams.js";

export interface GenerationState {
  generation: string;
  record: GenerationRecord;
  /** The newest complete snapshot (undefined: the generation still needs its first). */
  snapshot?: SnapshotIndex;
  /** What the store holds of each stream. */
  ends: Map<string, StreamEnd>;
  resumed: boolean;
}

/** Where each stream of a generation ends in the store: its newest snapshot, then its segments. */
export async function storedEnds(store: BackupStore, g: GenerationListing): Promise<Map<string, StreamEnd>> {
  const ends = new Map<string, StreamEnd>();
  const snap = g.snapshots[g.snapshots.length - 1];
  for (const [stream, end] of Object.entries(snap?.streams ?? {})) ends.set(stream, end);
  for (const [stream, segs] of g.segments) {
    // The furthest segment still there: a compaction may delete a listed one before its HEAD.
    for (const last of [...segs].sort((a, b) => b.to - a.to || a.from - b.from)) {
      if (last.to <= (ends.get(stream)?.length ?? 0)) break;
      const ix = await readSegmentIndex(store, last.key);
      if (!ix) continue;
      const end: StreamEnd = { length: last.to, tail_sha256: ix.tail_sha256 };
      if (last.lastSeq !== undefined) Object.assign(end, { seq: last.lastSeq, entry_hash: ix.last_hash });
      ends.set(stream, end);
      break;
    }
  }
  return ends;
}

/** Why `g` cannot be continued from this workspace, or undefined when it can. */
async function broken(
  ws: Workspace,
  g: GenerationListing,
  ends: Map<string, StreamEnd>,
): Promise<string | undefined> {
  if (!g.record) return `generation ${g.generation} has no record`;
  if (g.record.workspace !== ws.root || g.record.host !== os.hostname()) {
    return `generation ${g.generation} archives another workspace (${g.record.host}:${g.record.workspace})`;
  }
  for (const [stream, end] of ends) {
    if (!(await stillContinues(ws.p(stream), end))) {
      return `${stream} no longer holds what generation ${g.generation} archived (restored, rolled back or rewritten)`;
    }
  }
  return undefined;
}

/** Resumes the newest generation of this workspace, or starts one (its record written). */
export async function openGeneration(
  store: BackupStore,
  ws: Workspace,
  opts: { encrypted: boolean; salt?: string; forceCause?: string },
): Promise<GenerationState> {
  const listing = await listArchive(store);
  const newest = listing.generations[listing.generations.length - 1];
  let cause = opts.forceCause ?? "first start: the archive holds no generation";
  if (newest && opts.forceCause === undefined) {
    const ends = await storedEnds(store, newest);
    const why = await broken(ws, newest, ends);
    if (!why && newest.record!.encrypted === opts.encrypted) {
      return {
        generation: newest.generation,
        record: newest.record!,
        snapshot: newest.snapshots[newest.snapshots.length - 1],
        ends,
        resumed: true,
      };
    }
    cause = why ?? (opts.encrypted ? "encryption turned on" : "encryption turned off");
  }
  const generation = newGenerationId();
  const record: GenerationRecord = {
    format: GENERATION_FORMAT,
    generation,
    created_at: new Date().toISOString(),
    host: os.hostname(),
    workspace: ws.root,
    previous: newest?.generation ?? null,
    cause,
    encrypted: opts.encrypted,
    ...(opts.salt ? { salt: opts.salt } : {}),
  };
  await putJson(store, generationKey(generation), record);
  return { generation, record, ends: new Map(), resumed: false };
}

/** The end to ship after, for a stream the generation has not seen yet: its start. */
export const endOrStart = (ends: Map<string, StreamEnd>, stream: string): StreamEnd =>
  ends.get(stream) ?? emptyEnd(stream);
