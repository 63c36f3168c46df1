/**
 * Point-in-time restore from a WAL archive: the newest snapshot at or before the point
 * (restored by `dr restore`'s own code into a staging folder), then each stream rebuilt from
 * its segments up to the point (apply-segments.ts: every hash checked from the snapshot's WAL
 * position to the target), the uncommitted index (restore-intents.ts) and the orchestrator state
 * (restore-state.ts) taken from the lines on the way and written as a checkpoint, a caller's
 * finishing step (the CLI materializes task files from that state), and only then the swap into
 * place with `dr restore`'s guards (restore-target.ts). The audit log, the ledger and the run
 * records are cut at the same instant as the WAL.
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { writeCheckpoint } from "../checkpoint/checkpoint.js";
import { loadState } from "../checkpoint/load-state.js";
import { ExitCode, UserError, wrapError } from "../errors/errors.js";
import {
  extractIntoStaging,
  stagedRestoreResult,
  type RestoreResult,
  type StagedArchive,
} from "../dr/restore.js";
import type { BackupStore } from "../storage/store.js";
import { buildAndSwapIn, type StagingBuild, type StopLiveHolder } from "../dr/restore-target.js";
import { atomicWriteFile } from "../workspace/durable.js";
import { Workspace } from "../workspace/layout.js";
import { readLinesBackward } from "../workspace/lines.js";
import { entryTimeMs } from "../wal/entry.js";
import type { OrchestratorState } from "../state/reducer.js";
import { BrokenSegment, applyStream, cutAt, type Cut } from "./apply-segments.js";
import {
  listArchive,
  recordOf,
  snapshotObjectProblem,
  type GenerationListing,
  type SnapshotIndex,
} from "./catalog.js";
import { ARCHIVE_STATUS } from "./health.js";
import { streamFile, walRunOf } from "./names.js";
import { RestoreIntents } from "./restore-intents.js";
import { PointState } from "./restore-state.js";
import { codecOf } from "./segment-codec.js";
import { unlockGeneration, type SegmentKey } from "./sealing.js";
import { formatWindow, generationWindow, type GenerationWindow } from "./window.js";
import { entryTimes } from "./entry-times.js";

/** `text` of a time: the instant as the user gave it, echoed by an error. */
export type RestorePoint = (
  | { kind: "time"; atMs: number; text?: string }
  | { kind: "seq"; run: string; seq: number }
  | { kind: "latest" }
) & {
  /** Only this generation (`--generation`): the point of that history, where windows overlap. */
  generation?: string;
};

export interface PointRestoreOptions {
  password?: string;
  /** age identities, for generations encrypted to recipients. */
  identities?: readonly string[];
  auditKeyPath?: string;
  /** On a broken segment, restore the last instant before it instead of failing (exit 5). */
  lastConsistent?: boolean;
  /** Runs on the staging folder before it is renamed into place, with the point's orchestrator state. */
  finish?: (root: string, state: OrchestratorState) => Promise<void>;
  /** Where the archive is, for the restore record. */
  source: string;
  /** Stops a live holder of the target's lock instead of refusing (`--force`). */
  stopLiveHolder?: StopLiveHolder;
  /** Keep the previous target as `<target>.pre-restore-<ts>` (default true). */
  keep?: boolean;
}

export interface PointRestoreResult {
  target: string;
  kept?: string;
  generation: string;
  snapshot: string;
  /** The instant restored (epoch ms) and the WAL position of each run there. */
  at: number;
  wal: Record<string, { seq: number; entry_hash: string | undefined }>;
  segments: number;
  /**
   * Set when --last-consistent moved the point back before a broken segment. `at_seq` (RUN:SEQ)
   * when the WAL was cut there: the broken lines' times are unknown, so `--at` of the instant is
   * refused and only `--at-seq` of it restores this point again.
   */
  broken?: { segment: string; reason: string; at_seq?: string };
  warnings: string[];
  snapshot_restore: RestoreResult;
}

export const RESTORE_POINT_RECORD = ["runtime", "restored-from-archive.json"] as const;

interface Chosen {
  gen: GenerationListing;
  window: GenerationWindow;
  snapshot: SnapshotIndex;
  cut: Cut;
  /** Other generations that hold the point too (other histories), each with a line saying so. */
  alsoIn: string[];
}

type Usable = { gen: GenerationListing; window: GenerationWindow };

/** The generations a point may come from: all that are restorable, or the one `--generation` names. */
async function usableGenerations(store: BackupStore, point: RestorePoint): Promise<Usable[]> {
  const listing = await listArchive(store);
  const wanted = point.generation;
  const gens = wanted ? listing.generations.filter((g) => g.generation === wanted) : listing.generations;
  if (wanted && gens.length === 0)
    throw new UserError(
      `--generation ${wanted}: ${store.root} holds no such generation (${listing.generations.map((g) => g.generation).join(", ") || "none"})`,
      ExitCode.USAGE,
    );
  const windows: Usable[] = [];
  for (const gen of gens) windows.push({ gen, window: await generationWindow(store, gen) });
  const usable = windows.filter((w) => w.window.earliest !== null);
  const damaged = gens.flatMap((g) => g.damaged)[0];
  if (usable.length === 0 && damaged)
    throw new UserError(
      `${store.describe(damaged.key)}: ${damaged.reason} (a snapshot index; no other base snapshot to restore from)`,
      ExitCode.CORRUPT,
    );
  if (usable.length === 0)
    throw new UserError(
      wanted
        ? `--generation ${wanted}: not restorable (no complete base snapshot)`
        : `${store.root}: no restorable generation (no complete base snapshot)`,
      ExitCode.USAGE,
    );
  return usable;
}

/** The generations but `except` whose windows hold `atMs`, as the end of a line refusing it there. */
async function otherWindowsHolding(store: BackupStore, atMs: number, except: string): Promise<string> {
  const holding: string[] = [];
  for (const gen of (await listArchive(store)).generations) {
    if (gen.generation === except) continue;
    const w = await generationWindow(store, gen);
    if (w.earliest !== null && w.earliest <= atMs && atMs <= w.latest!) holding.push(formatWindow(w));
  }
  return holding.length === 0
    ? ""
    : `; ${holding.length === 1 ? "another generation holds" : "other generations hold"} it (${holding.join("; ")}): --generation names the one to restore from`;
}

/** A generation as a line names it: its id and why it started. */
const named = (w: Usable): string =>
  `generation ${w.gen.generation}${w.gen.record?.cause ? ` (${w.gen.record.cause})` : ""}`;

/** Whether a generation holds entry `seq` of the WAL stream `stream`, in a segment or a snapshot. */
const holdsSeq = (w: Usable, stream: string, seq: number): boolean =>
  (w.gen.segments.get(stream) ?? []).some((s) => s.firstSeq! <= seq && seq <= s.lastSeq!) ||
  w.gen.snapshots.some((s) => (s.streams[stream]?.seq ?? -1) >= seq);

/**
 * Whether entry `seq` of `stream` falls in a hole of a generation's segments: after its oldest
 * snapshot's position, held by no segment, with later entries archived. The restore names the hole
 * (exit 5), or `--last-consistent` stops before it: the entry was made, and is lost.
 */
const inHole = (w: Usable, stream: string, seq: number): boolean => {
  const segs = w.gen.segments.get(stream) ?? [];
  return (
    oldestSnapshotSeq(w, stream) < seq &&
    !segs.some((s) => s.firstSeq! <= seq && seq <= s.lastSeq!) &&
    segs.some((s) => s.firstSeq! > seq)
  );
};

/** The newest entry of `stream` its oldest snapshot holds (-1: none). */
const oldestSnapshotSeq = (w: Usable, stream: string): number =>
  w.gen.snapshots[0]!.streams[stream]?.seq ?? -1;

/** The generation's key, for reading its segments (undefined: plain). */
type KeyOf = (gen: GenerationListing) => Promise<SegmentKey | undefined>;

/** Where `--at-seq` stands in a generation: the entry's time, and whether its window holds it. */
interface SeqInGeneration {
  w: Usable;
  /** The entry's own time (undefined: no segment holds it, only a snapshot). */
  atMs?: number;
  inWindow: boolean;
}

/**
 * Where entry `seq` of `stream` stands in a generation. A snapshot holds everything as it was
 * when it completed, not only the WAL up to its position, so no restore can go back to an entry
 * its oldest snapshot holds: only an entry after that snapshot's position is in the generation's
 * reach. Its own time is read from its segment; one made before the snapshot completed (a line
 * begun before it and finished after) is in reach all the same, at the window's start.
 */
async function seqInGeneration(
  store: BackupStore,
  w: Usable,
  stream: string,
  seq: number,
  keyOf: KeyOf,
): Promise<SeqInGeneration> {
  if (oldestSnapshotSeq(w, stream) >= seq) return { w, inWindow: false };
  // Its time is unknown; the restore stops at the hole before reading anything after it.
  if (inHole(w, stream, seq)) return { w, inWindow: true };
  const codec = codecOf(recordOf(store, w.gen), await keyOf(w.gen));
  try {
    for await (const e of entryTimes(store, w.gen.segments.get(stream) ?? [], codec, seq)) {
      if (e.seq !== seq) break;
      return { w, atMs: e.atMs, inWindow: true };
    }
  } catch (err) {
    // A damaged segment: the restore names it (exit 5), or --last-consistent stops before it.
    if (err instanceof UserError && err.exitCode === ExitCode.CORRUPT) return { w, inWindow: true };
    throw err;
  }
  return { w, inWindow: false };
}

/**
 * The line refusing `--at-seq` of an entry the oldest snapshot of the newest generation holding it
 * holds: that window, and the earliest seq that restores (the first one after the snapshot).
 */
function beforeWindow(at: SeqInGeneration, run: string, seq: number): UserError {
  const { w } = at;
  const stream = `runtime/wal/${run}.wal.jsonl`;
  const start = new Date(w.window.earliest!).toISOString();
  const after = oldestSnapshotSeq(w, stream) + 1;
  const instead = holdsSeq(w, stream, after)
    ? `the earliest seq of ${run} that can be restored is ${after} (--at-seq ${run}:${after})`
    : `no later entry of ${run} is archived yet (--at ${start} restores the window's start)`;
  return new UserError(
    `--at-seq ${run}:${seq} is before the archive's window (${formatWindow(w.window)}): the entry is in the ` +
      `base snapshot, which holds every file as it was when it completed, not as it was right after the entry; ${instead}`,
    ExitCode.USAGE,
  );
}

/** Each generation but `chosen` that holds the point too (`holds`): another history, and how to choose it. */
const otherHistories = (
  usable: Usable[],
  chosen: Usable,
  holds: (w: Usable) => boolean,
  holding: (w: Usable) => string,
): string[] =>
  usable
    .filter((w) => w !== chosen && holds(w))
    .map(
      (w) =>
        `${holding(w)}, another history; ` +
        `restored from generation ${chosen.gen.generation}, --generation ${w.gen.generation} restores that one`,
    );

/**
 * The generation, snapshot and cut for a point; exit 2 naming the windows when it is outside them.
 * Where windows overlap (a restored workspace archived beside the one it came from), a point can
 * be in more than one history: the newest generation that holds it is chosen, and every other one
 * is named with the `--generation` that chooses it.
 */
async function choose(store: BackupStore, point: RestorePoint, keyOf: KeyOf): Promise<Chosen> {
  const usable = await usableGenerations(store, point);
  const describe = () => usable.map((w) => formatWindow(w.window)).join("; ");
  const newestFirst = [...usable].reverse();
  let pick: Usable | undefined;
  let cut: Cut;
  let alsoIn: string[];
  if (point.kind === "latest") {
    const chosen = usable[usable.length - 1]!;
    pick = chosen;
    cut = { atMs: chosen.window.latest! };
    alsoIn = usable
      .filter((w) => w.window.latest! > chosen.window.latest!)
      .map(
        (w) =>
          `${named(w)} is another history that reaches later, to ${new Date(w.window.latest!).toISOString()}; ` +
          `--latest restores generation ${chosen.gen.generation}, the newest, and --generation ${w.gen.generation} --latest that one`,
      );
  } else if (point.kind === "time") {
    const inWindow = (w: Usable) => w.window.earliest! <= point.atMs && point.atMs <= w.window.latest!;
    pick = newestFirst.find(inWindow);
    if (!pick) {
      const isoOf = (ms: number) => new Date(ms).toISOString();
      const iso = isoOf(point.atMs);
      const given = point.text !== undefined && point.text !== iso ? `${point.text} (${iso})` : iso;
      const newest = Math.max(...usable.map((w) => w.window.latest!));
      const latest = usable[usable.length - 1]!.window.latest!;
      const only = point.generation;
      // After every window: the store proves nothing later, though nothing may have happened.
      // With --generation, only that one's: another generation may hold the instant.
      const hint = only
        ? `${point.atMs > newest ? `; generation ${only} holds nothing newer than ${isoOf(newest)} (--generation ${only} --latest restores to it)` : ""}` +
          (await otherWindowsHolding(store, point.atMs, only))
        : point.atMs <= newest
          ? ""
          : `; nothing newer than ${isoOf(newest)} is archived (--latest restores to ${latest === newest ? "it" : `${isoOf(latest)}, the newest generation's end`})`;
      throw new UserError(
        `--at ${given} is outside the archive's window (${describe()})${hint}`,
        ExitCode.USAGE,
      );
    }
    const at = new Date(point.atMs).toISOString();
    alsoIn = otherHistories(usable, pick, inWindow, (w) => `--at ${at} is also in the window of ${named(w)}`);
    cut = { atMs: point.atMs };
  } else {
    const stream = `runtime/wal/${point.run}.wal.jsonl`;
    // Newest first: the first generation whose window holds the entry restores it.
    const holding = newestFirst.filter((w) => holdsSeq(w, stream, point.seq) || inHole(w, stream, point.seq));
    const places: SeqInGeneration[] = [];
    for (const w of holding) places.push(await seqInGeneration(store, w, stream, point.seq, keyOf));
    const at = places.find((p) => p.inWindow);
    if (!at && places.length > 0) throw beforeWindow(places[0]!, point.run, point.seq);
    if (!at) {
      let newest = -1;
      for (const w of usable) {
        for (const s of w.gen.segments.get(stream) ?? []) newest = Math.max(newest, s.lastSeq ?? -1);
        for (const s of w.gen.snapshots) newest = Math.max(newest, s.streams[stream]?.seq ?? -1);
      }
      const holds =
        newest >= 0
          ? `it holds ${point.run} up to seq ${newest}`
          : `it holds no entry of WAL run ${point.run}`;
      throw new UserError(
        `--at-seq ${point.run}:${point.seq} is not in the archive: ${holds} (${describe()})`,
        ExitCode.USAGE,
      );
    }
    pick = at.w;
    alsoIn = otherHistories(
      usable,
      pick,
      (w) => places.some((p) => p.w === w && p.inWindow),
      (w) => `--at-seq ${point.run}:${point.seq} is also held by ${named(w)}`,
    );
    // The entry's instant cuts every other stream, as `--at` of it does (unknown before a damaged
    // segment is read: the restore then stops there).
    cut = { atMs: at.atMs ?? Number.MAX_SAFE_INTEGER, run: point.run, seq: point.seq };
    const start = pick.window.earliest!;
    if (cut.atMs < start) {
      // Nothing of the other streams can be older than the snapshot they start from.
      alsoIn.push(
        `${point.run}:${point.seq} was made at ${new Date(cut.atMs).toISOString()}, before its snapshot completed: ` +
          `its WAL is cut right after it, every other file is as of the window's start, ${new Date(start).toISOString()}`,
      );
      cut.atMs = start;
    }
  }
  const refused = pick.gen.refused[0];
  if (refused)
    throw new UserError(
      `${store.describe(refused.key)}: ${refused.reason}: hostile or damaged, in generation ${pick.gen.generation}; ` +
        `nothing restored (remove the object, or restore another generation with --generation)`,
      ExitCode.CORRUPT,
    );
  const snaps = pick.gen.snapshots;
  const stream = cut.run ? `runtime/wal/${cut.run}.wal.jsonl` : undefined;
  // The one `--at` of the same instant starts from; for `--at-seq` also one holding the run only
  // before the entry (an entry made in the millisecond a snapshot completed may be inside it).
  const snapshot =
    [...snaps]
      .reverse()
      .find((s) => s.completed_at <= cut.atMs && (!stream || (s.streams[stream]?.seq ?? -1) < cut.seq!)) ??
    snaps[0]!;
  return { gen: pick.gen, window: pick.window, snapshot, cut, alsoIn };
}

/** The time of the last entry of a WAL file (its own timestamp). */
async function lastEntryTime(file: string): Promise<number> {
  for await (const line of readLinesBackward(file)) {
    return entryTimeMs((JSON.parse(line.text) as { timestamp: number }).timestamp);
  }
  return 0;
}

/** Rebuilds every stream of `root` from the snapshot's copy to the cut. */
async function applyAll(
  store: BackupStore,
  c: Chosen,
  root: string,
  key: SegmentKey | undefined,
  intents: RestoreIntents,
  ctx: StagingBuild,
  /** Aborted by an interrupt: stops the segment download under way. */
  downloads: AbortSignal,
): Promise<{ cut: Cut; wal: PointRestoreResult["wal"]; segments: number; state?: OrchestratorState }> {
  const streams = [...new Set([...Object.keys(c.snapshot.streams), ...c.gen.segments.keys()])];
  const cut = { ...c.cut };
  const targetStream = cut.run ? `runtime/wal/${cut.run}.wal.jsonl` : undefined;
  // The --at-seq target's stream first: its entry's time is the instant for every other stream.
  streams.sort((a, b) => Number(b === targetStream) - Number(a === targetStream));
  const wal: PointRestoreResult["wal"] = {};
  let segments = 0;
  // The WAL copies at the snapshot's positions first: the state starts from theirs.
  for (const stream of streams)
    if (walRunOf(stream) !== undefined)
      await cutAt(streamFile(root, stream), c.snapshot.streams[stream]?.length ?? 0);
  const state = await PointState.ofSnapshot(new Workspace(root));
  for (const stream of streams) {
    ctx.checkpoint();
    const file = streamFile(root, stream);
    const run = walRunOf(stream);
    const rows = run !== undefined ? await intents.begin(run, file, c.snapshot.streams[stream]) : undefined;
    const applied = await applyStream(
      store,
      stream,
      c.gen.segments.get(stream) ?? [],
      file,
      c.snapshot.streams[stream],
      cut,
      {
        codec: codecOf(recordOf(store, c.gen), key),
        stop: downloads,
        onIntents: rows ? (kept) => rows.add(kept) : undefined,
        ...(run !== undefined
          ? { onKept: (entries, end) => state.apply(run, entries, end), entriesWanted: PointState.needs }
          : {}),
      },
    );
    segments += applied.segments;
    if (applied.end.length === 0 && !c.snapshot.streams[stream] && stream !== targetStream) {
      // Born after the instant: the workspace had no such file then.
      await rm(file, { force: true });
      continue;
    }
    if (stream === targetStream) {
      if ((applied.end.seq ?? -1) < cut.seq!) {
        throw new UserError(
          `--at-seq ${cut.run}:${cut.seq}: the archive holds ${cut.run} only up to seq ${applied.end.seq}`,
          ExitCode.USAGE,
        );
      }
      cut.atMs = Math.max(applied.targetTime ?? (await lastEntryTime(file)), c.window.earliest!);
      cut.run = undefined;
    }
    if (run !== undefined) wal[run] = { seq: applied.end.seq ?? -1, entry_hash: applied.end.entry_hash };
  }
  return { cut, wal, segments, state: await state.result() };
}

/** Builds the point's workspace into `staging` (which must not exist yet). */
async function buildPoint(
  store: BackupStore,
  chosen: Chosen,
  staging: string,
  opts: PointRestoreOptions,
  broken: PointRestoreResult["broken"],
  key: SegmentKey | undefined,
  target: string,
  ctx: StagingBuild,
): Promise<{
  result: Omit<PointRestoreResult, "target" | "kept" | "snapshot_restore" | "warnings">;
  snapshot: StagedArchive;
}> {
  const snapshotName = store.describe(chosen.snapshot.key);
  const problem = await snapshotObjectProblem(store, chosen.snapshot);
  if (problem)
    throw new UserError(`${snapshotName}: ${problem} (the point's base snapshot)`, ExitCode.CORRUPT);
  // An interrupt stops the download under way, the snapshot's or a segment's, not only the next
  // one: a store that took the request and never answers would hold the restore until it timed out.
  const downloads = new AbortController();
  ctx.beforeRemove(async () => downloads.abort());
  // Straight into the staging folder: a restore of its own would nest its lock and staging
  // folder beside this one, for an interrupt to race with.
  const body = await store.get(chosen.snapshot.key, undefined, { signal: downloads.signal });
  const snapshot = await extractIntoStaging(body, staging, ctx, target, {
    password: opts.password,
    identities: opts.identities,
    auditKeyPath: opts.auditKeyPath,
    source: snapshotName,
    label: snapshotName,
    expectSha256: chosen.snapshot.sha256,
    archiveBytes: chosen.snapshot.size_bytes,
  }).catch((err: unknown) => {
    // The archive's own messages do not name it: here it is one object of many.
    throw err instanceof UserError && err.exitCode === ExitCode.CORRUPT && !err.message.includes(snapshotName)
      ? wrapError(snapshotName, err)
      : err;
  });
  ctx.checkpoint();
  const ws = new Workspace(staging);
  const intents = new RestoreIntents(ws);
  const applied = await applyAll(store, chosen, staging, key, intents, ctx, downloads.signal).finally(() =>
    intents.close(),
  );
  ctx.checkpoint();
  await intents.writeIndex();
  await rm(ws.p(...ARCHIVE_STATUS), { force: true });
  const result = {
    generation: chosen.gen.generation,
    snapshot: chosen.snapshot.key,
    at: applied.cut.atMs,
    wal: applied.wal,
    segments: applied.segments,
    ...(broken ? { broken } : {}),
  };
  await atomicWriteFile(
    ws.p(...RESTORE_POINT_RECORD),
    JSON.stringify({ source: opts.source, restored_at: new Date().toISOString(), ...result }, null, 2) + "\n",
  );
  // Built on the way when that is provably a loadState of the result (restore-state.ts). As a
  // checkpoint, the first status or start after the restore reads the WAL from the point on, not
  // from the snapshot's position.
  ctx.checkpoint();
  const state = applied.state ?? (await loadState(ws)).state;
  await writeCheckpoint(ws, state);
  ctx.checkpoint();
  await opts.finish?.(staging, state);
  return { result, snapshot };
}

/** The point before a broken segment to restore instead (`--last-consistent`), in the same generation (another one is another history). */
function lastGoodPoint(err: BrokenSegment, c: Chosen): RestorePoint {
  const generation = c.gen.generation;
  const run = walRunOf(err.stream);
  if (run !== undefined && err.lastGoodSeq !== undefined)
    return { kind: "seq", run, seq: err.lastGoodSeq, generation };
  const atMs = Math.min(c.cut.atMs, err.lastGoodTime);
  return { kind: "time", atMs: Math.max(atMs, c.window.earliest!), generation };
}

/**
 * Restores `target` to the point, with `dr restore`'s guards (restore-target.ts): the restore
 * lock, a live holder refused unless it may be stopped, a journaled swap, the previous target kept.
 */
export async function restoreToPoint(
  store: BackupStore,
  point: RestorePoint,
  target: string,
  opts: PointRestoreOptions,
): Promise<PointRestoreResult> {
  const keys = new Map<string, SegmentKey | undefined>();
  const keyOf = async (g: GenerationListing): Promise<SegmentKey | undefined> => {
    const gen = g.generation;
    if (!keys.has(gen)) keys.set(gen, await unlockGeneration(gen, recordOf(store, g).encryption, opts));
    return keys.get(gen);
  };
  let chosen = await choose(store, point, keyOf);
  const alsoIn = chosen.alsoIn;
  let broken: PointRestoreResult["broken"];
  // Before anything is written or locked: a wrong password or identity is refused here (exit 4).
  await keyOf(chosen.gen);
  const abs = path.resolve(target);
  const guard = { stopLiveHolder: opts.stopLiveHolder, keep: opts.keep };
  const tried = new Set<string>();
  const done = await buildAndSwapIn(target, guard, async (staging, ctx) => {
    for (;;) {
      try {
        return await buildPoint(store, chosen, staging, opts, broken, await keyOf(chosen.gen), abs, ctx);
      } catch (err) {
        // Else the restore's failure path removes the staging folder.
        if (!(err instanceof BrokenSegment) || !opts.lastConsistent) throw err;
        // The last point every stream holds whole: just before the broken segment's first line,
        // or, in a WAL whose break holds lines of unknown time, right after its last entry before it.
        const earlier = lastGoodPoint(err, chosen);
        const key = JSON.stringify(earlier);
        // Another stream may break earlier still; the same point again would break the same way.
        if (tried.has(key)) throw err;
        tried.add(key);
        await rm(staging, { recursive: true, force: true });
        broken ??= { segment: err.key, reason: err.message };
        broken.at_seq = earlier.kind === "seq" ? `${earlier.run}:${earlier.seq}` : undefined;
        chosen = await choose(store, earlier, keyOf);
      }
    }
  });
  // Only now, with the restore in place: a key saved beside the target before would outlive a
  // restore that failed or was interrupted after it.
  const snapshotRestore = await stagedRestoreResult(done.value.snapshot, done.target);
  return {
    target: done.target,
    ...(done.kept ? { kept: done.kept } : {}),
    ...done.value.result,
    warnings: [...alsoIn, ...done.warnings, ...snapshotRestore.warnings],
    snapshot_restore: snapshotRestore,
  };
}
