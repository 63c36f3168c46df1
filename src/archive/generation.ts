/**
 * Which generation an archiver writes to: the newest one of this workspace when the workspace
 * still holds every byte it archived (then shipping resumes exactly where the store ends), else
 * a new one that names the previous generation and why continuity could not be proven.
 */
import os from "node:os";
import { ExitCode, UserError } from "../errors/errors.js";
import { recipientFingerprint } from "../dr/age/keys.js";
import { parseBackupName } from "../storage/catalogue.js";
import type { BackupStore } from "../storage/store.js";
import { verifyWal } from "../wal/reader.js";
import type { Workspace } from "../workspace/layout.js";
import {
  GENERATION_FORMAT,
  listArchive,
  putJson,
  readSegmentIndex,
  type GenerationListing,
  type GenerationRecord,
  type SegmentIndex,
  type SnapshotIndex,
} from "./catalog.js";
import { windowEnd } from "./window.js";
import { generationKey, newGenerationId, parseArchiveKey } from "./names.js";
import { ARCHIVE_KEY, loadGenerationKey, saveGenerationKey } from "./local-key.js";
import {
  fileKeyOpens,
  newGenerationKey,
  schemeOf,
  unlockGeneration,
  type SegmentKey,
  type WriteKeys,
} from "./sealing.js";
import { SEGMENT_COMPRESSION, codecOf, type SegmentCodec, type SegmentCompression } from "./segment-codec.js";
import type { SettledStream, UnsettledPut } from "./shipper.js";
import { emptyEnd, stillContinues, type StreamEnd } from "./streams.js";

export interface GenerationState {
  generation: string;
  record: GenerationRecord;
  /** The newest complete snapshot (undefined: the generation still needs its first). */
  snapshot?: SnapshotIndex;
  /** What the store holds of each stream. */
  ends: Map<string, StreamEnd>;
  resumed: boolean;
  /** How its segments are stored (with the key of an encrypted generation). */
  codec: SegmentCodec;
  /** When the generation's oldest snapshot completed (epoch ms): the start of its window. */
  firstSnapshotAt?: number;
  /** The newest instant its window reaches (epoch ms, window.ts windowEnd), as the store holds it. */
  windowEnd?: number;
  /**
   * The number the next snapshot takes: above every snapshot archive the store may hold, indexed
   * or not, so a snapshot name is never written twice (a retaken snapshot has other bytes).
   */
  nextSnapshot: number;
  /** Snapshot archives without an index (interrupted snapshots): deleted once a later one is indexed. */
  orphans: string[];
  /** Per stream, a segment put that failed, to be sent again as it was (shipper.ts). */
  unsettled: Map<string, UnsettledPut>;
  /** Per stream, the file as a cycle last found it wholly shipped (shipper.ts). */
  settled: Map<string, SettledStream>;
}

/** Where the next snapshot of `g` starts numbering, and the interrupted snapshots it leaves behind. */
function snapshotNumbering(g: GenerationListing): { nextSnapshot: number; orphans: string[] } {
  let highest = -1;
  for (const s of g.snapshots) highest = Math.max(highest, s.number);
  for (const key of g.unindexed) {
    const p = parseArchiveKey(key);
    if (p?.kind === "snapshot") highest = Math.max(highest, p.number);
  }
  return { nextSnapshot: highest + 1, orphans: [...g.unindexed] };
}

/** Where each stream of a generation ends in the store: its newest snapshot, then its segments. */
export async function storedEnds(
  store: BackupStore,
  g: GenerationListing,
  /** Gets the indexes read on the way, by key. */
  indexes?: Map<string, SegmentIndex>,
): Promise<Map<string, StreamEnd>> {
  const ends = new Map<string, StreamEnd>();
  const snap = g.snapshots[g.snapshots.length - 1];
  for (const [stream, end] of Object.entries(snap?.streams ?? {})) ends.set(stream, end);
  for (const [stream, segs] of g.segments) {
    // The furthest segment still there: a compaction may delete a listed one before its HEAD.
    for (const last of [...segs].sort((a, b) => b.to - a.to || a.from - b.from)) {
      if (last.to <= (ends.get(stream)?.length ?? 0)) break;
      const ix = await readSegmentIndex(store, last.key);
      if (!ix) continue;
      indexes?.set(last.key, ix);
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
  return repairedBreak(ws, g);
}

/**
 * A WAL break the generation's newest snapshot holds as found that the workspace no longer has
 * (repaired in place, or a good copy restored over it with the same tail): the archive's history
 * is not the workspace's, and a new generation starts from the intact one.
 */
async function repairedBreak(ws: Workspace, g: GenerationListing): Promise<string | undefined> {
  const snapshot = g.snapshots[g.snapshots.length - 1];
  for (const b of snapshot?.wal_breaks ?? []) {
    const first = (await verifyWal(ws.walFile(b.run_id), b.run_id)).errors[0];
    if (first?.line !== b.line || first.kind !== b.kind)
      return (
        `${b.run_id}: the break at seq ${b.seq} (line ${b.line}) that base snapshot ${snapshot!.number} of generation ${g.generation} holds ` +
        `is no longer in the workspace (${first ? `it now breaks at line ${first.line}: ${first.kind}` : "repaired"})`
      );
  }
  return undefined;
}

export interface GenerationOptions {
  /** What the archiver encrypts with (neither: plain). */
  keys: WriteKeys;
  /** The user asked for a plain archive explicitly: an encrypted generation may be followed by a plain one. */
  plainChosen?: boolean;
  forceCause?: string;
  /** PBKDF2 iterations for a new password generation (tests lower it). */
  iterations?: number;
  /**
   * How a new generation's segments are compressed (default SEGMENT_COMPRESSION; null: not at
   * all): the forms of earlier archivers, for tests of such archives. A resumed generation keeps
   * the form it started with.
   */
  compression?: SegmentCompression | null;
}

/**
 * The key to continue `g` with, or why a new generation is needed instead. A generation started
 * encrypted is never continued, nor followed, in plain unless the user chose plain: an archiver
 * restarted without its key refuses (exit 2) rather than ship plaintext, and one given another
 * password refuses (exit 4).
 */
async function continuation(
  ws: Workspace,
  g: GenerationListing,
  opts: GenerationOptions,
): Promise<{ key?: SegmentKey } | { cause: string }> {
  const enc = g.record!.encryption;
  const scheme = schemeOf(opts.keys);
  if (enc && !scheme && !opts.plainChosen)
    throw new UserError(
      `archive generation ${g.generation} is encrypted (${enc.scheme === "age" ? "age recipients" : "password"}): ` +
        `give ${enc.scheme === "age" ? "--recipient/--recipients-file" : "its password (--password-file or BERNSTEIN_DR_PASSWORD)"}, ` +
        "or --plain to start a plain generation",
      ExitCode.USAGE,
    );
  if (!enc && !scheme) return {};
  if (!enc) return { cause: "encryption turned on" };
  if (!scheme) return { cause: "encryption turned off (--plain)" };
  if (enc.scheme !== scheme) return { cause: `encryption changed from ${enc.scheme} to ${scheme}` };
  if (scheme === "fernet") return { key: await unlockGeneration(g.generation, enc, opts.keys) };
  // Recipients: the archiver can wrap but, by design, not unwrap: it continues with the key it kept.
  const same = opts.keys.recipients!.map(recipientFingerprint).sort().join(",");
  if ([...(enc.recipients ?? [])].sort().join(",") !== same) return { cause: "the recipients changed" };
  const kept = await loadGenerationKey(ws, g.generation);
  if (!kept || !fileKeyOpens(enc, kept))
    return {
      cause: `the key of generation ${g.generation} is not kept on this host (${ARCHIVE_KEY.join("/")})`,
    };
  return { key: { scheme: "age", key: kept } };
}

/**
 * Resumes the newest generation of this workspace, or starts one (its record written). In an
 * archive another workspace also archives to (a restored copy elsewhere), this workspace's newest
 * generation may not be the archive's newest: it is resumed all the same when the workspace still
 * holds what it holds, rather than a new generation and a full base snapshot on every restart.
 */
export async function openGeneration(
  store: BackupStore,
  ws: Workspace,
  opts: GenerationOptions,
): Promise<GenerationState> {
  const listing = await listArchive(store);
  const backups = listing.foreign.filter((k) => parseBackupName(k) !== undefined);
  if (backups.length > 0)
    throw new UserError(
      `${store.root} holds ${backups.length} backup(s) (${backups[0]}${backups.length > 1 ? ", ..." : ""}): ` +
        "a WAL archive's location holds nothing else (dr list and dr prune would take one for the other); give another folder or prefix",
      ExitCode.USAGE,
    );
  const newest = listing.generations[listing.generations.length - 1];
  const isOurs = (g: GenerationListing) => g.record?.workspace === ws.root && g.record.host === os.hostname();
  const ours = [...listing.generations].reverse().find(isOurs) ?? newest;
  let cause = opts.forceCause ?? "first start: the archive holds no generation";
  if (ours?.record && schemeOf(opts.keys) === undefined && !opts.plainChosen) {
    await continuation(ws, ours, opts); // refuses to follow an encrypted generation in plain
  }
  if (ours && opts.forceCause === undefined) {
    const indexes = new Map<string, SegmentIndex>();
    const ends = await storedEnds(store, ours, indexes);
    const why = await broken(ws, ours, ends);
    const next = why ? { cause: why } : await continuation(ws, ours, opts);
    if (!("cause" in next)) {
      return {
        generation: ours.generation,
        record: ours.record!,
        snapshot: ours.snapshots[ours.snapshots.length - 1],
        ends,
        resumed: true,
        codec: codecOf(ours.record!, next.key),
        firstSnapshotAt: ours.snapshots[0]?.completed_at,
        // From the indexes just read: one more HEAD only when a stream's furthest segment vouches for no instant.
        windowEnd:
          (await windowEnd(ours, async (key) => indexes.get(key) ?? (await readSegmentIndex(store, key)))) ??
          undefined,
        ...snapshotNumbering(ours),
        unsettled: new Map(),
        settled: new Map(),
      };
    }
    cause = next.cause;
  }
  const fresh = await newGenerationKey(opts.keys, opts.iterations);
  const generation = newGenerationId();
  const record: GenerationRecord = {
    format: GENERATION_FORMAT,
    generation,
    created_at: new Date().toISOString(),
    host: os.hostname(),
    workspace: ws.root,
    previous: newest?.generation ?? null,
    cause,
    encrypted: fresh !== undefined,
    ...(fresh ? { encryption: fresh.record } : {}),
    ...(opts.compression === null ? {} : { compression: opts.compression ?? SEGMENT_COMPRESSION }),
  };
  // Kept before the record is stored: a generation whose record exists always has its key here.
  if (fresh?.key.scheme === "age") await saveGenerationKey(ws, generation, fresh.key.key);
  await putJson(store, generationKey(generation), record);
  return {
    generation,
    record,
    ends: new Map(),
    resumed: false,
    codec: codecOf(record, fresh?.key),
    nextSnapshot: 0,
    orphans: [],
    unsettled: new Map(),
    settled: new Map(),
  };
}

/** The end to ship after, for a stream the generation has not seen yet: its start. */
export const endOrStart = (ends: Map<string, StreamEnd>, stream: string): StreamEnd =>
  ends.get(stream) ?? emptyEnd(stream);
