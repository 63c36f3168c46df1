/**
 * The long-running archiver: opens (or starts) a generation, takes its base snapshot, then ships
 * what is durable within `intervalMs` of its fsync (cyclePeriod) and takes a new snapshot every
 * `snapshotIntervalMs`. A store failure is not fatal: the local files keep everything, the lag
 * grows and is reported, and the next cycle sends the same bytes again. A workspace restored or
 * rolled back underneath starts a new generation. Health goes to `runtime/archive-status.json`
 * (health.ts: at once when it matters to a reader, else at most every STATUS_EVERY_MS).
 *
 * Hosted by `dr archive` (run/stop) or by the orchestrator (`start --archive-to`: start/finish,
 * and with `--sync` its WAL commit gate, shippedThrough). Shipping cycles run one at a time; a
 * periodic snapshot runs beside them, so a commit gate never waits for a snapshot that itself
 * waits for the orchestrator's pause between decisions.
 *
 * With `compactTargetBytes`, the generation's small segments are merged in the background
 * (compact.ts, tiered by COMPACT_FANOUT) beside the cycles, never in their turn: a merge only
 * touches segments already stored, so shipping is never held up by it.
 */
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import { removeInterrupted, takeBaseSnapshot } from "./base-snapshot.js";
import type { SegmentIndex, SnapshotIndex } from "./catalog.js";
import { describeSnapshotBreak } from "./archive-status.js";
import { compactOwnGeneration } from "./compact.js";
import { openGeneration, type GenerationState } from "./generation.js";
import { ArchiveHealth } from "./health.js";
import { schemeOf, type WriteKeys } from "./sealing.js";
import { generationKey, snapshotKey, walRunOf } from "./names.js";
import type { SegmentCompression } from "./segment-codec.js";
import { ContinuityLost, shipCycle, type CycleResult } from "./shipper.js";
import { ReadBuffer } from "./streams.js";
import { setLongTimeout } from "../workspace/timer.js";

export interface ArchiverOptions {
  store: BackupStore;
  ws: Workspace;
  intervalMs: number;
  snapshotIntervalMs: number;
  /** Encrypt with this password (Fernet; PBKDF2 once per generation)... */
  password?: string;
  /** ...or to these age recipients (they win over a password, as in `dr backup`). */
  recipients?: readonly string[];
  /** The user chose a plain archive explicitly: an encrypted generation may be followed by a plain one. */
  plainChosen?: boolean;
  /** PBKDF2 iterations of a new password generation (default: the backups' 600,000). */
  kdfIterations?: number;
  /** How a new generation's segments are compressed (GenerationOptions.compression). */
  compression?: SegmentCompression | null;
  auditKeyPath?: string;
  /** A Prometheus textfile-collector file rewritten with the health (as the status file). */
  metricsFile?: string;
  /** Merge small segments in the background up to this size (undefined: no compaction). */
  compactTargetBytes?: number;
  /** Decisions wait for the store (shippedThrough is the WAL's commit gate). */
  sync?: boolean;
  /** One line per notable event (generation started, snapshot, store error, caught up). */
  log?: (event: ArchiverEvent) => void;
}

export type ArchiverEvent =
  | { event: "generation"; generation: string; resumed: boolean; cause?: string }
  | { event: "snapshot"; generation: string; number: number; key: string }
  /** A cycle that stored segments; `wal`: per run, the newest seq now in the store. */
  | { event: "cycle"; segments: number; bytes: number; stored_bytes: number; wal: Record<string, number> }
  | { event: "error"; error: string }
  /**
   * A workspace file no longer holds what the store holds (rewritten, truncated, replaced or
   * removed while the archiver ran): the generation ends there and a new one starts at once.
   */
  | { event: "continuity-lost"; message: string }
  /** A background compaction that merged or cleaned up something. */
  | { event: "compacted"; generation: string; merged: number; replaced: number; leftovers: number }
  /** A background compaction that failed (shipping goes on; the next one retries). */
  | { event: "compact-error"; error: string }
  | { event: "recovered"; after_errors: number }
  /** WAL bytes first held back (a torn tail, or damage: an error), named once. */
  | { event: "held-back"; damage: boolean; message: string }
  /** Held-back bytes that are gone (cut by a restart, or valid and shipped): shipping goes on. */
  | { event: "released"; run: string; after_seq: number }
  /** A base snapshot took a WAL whose chain was already broken (copied as found), named once. */
  | { event: "snapshot-damage"; message: string };

const GATE_RETRY_MS = 1000;
/** Indexes of stored segments kept for background compaction (storedIndexes): ~400 bytes each. */
const STORED_INDEXES_KEPT = 1024;
/** Cycles whose upload time sets the period (cyclePeriod). */
const UPLOADS_REMEMBERED = 8;
/**
 * Background compaction merges this many consecutive segments of one size tier (compact.ts), and
 * looks for them once this many segments were stored since it last looked: every byte is
 * rewritten about log8(target / segment size) times (5 for 8 MiB from ~300-byte segments), and a
 * stream holds at most 7 segments per tier besides its full-size ones.
 */
export const COMPACT_FANOUT = 8;
/**
 * A piece of 1/LARGE_PIECE_SHARE of the target or more is large: while the cycles ship that
 * much each, the writer is busy, and merging such pieces waits (deferLarge). 128 KiB for 8 MiB:
 * at a 100 ms interval, about 400 WAL entries a cycle.
 */
const LARGE_PIECE_SHARE = COMPACT_FANOUT * COMPACT_FANOUT;

/**
 * How often a running archiver makes sure its generation's record is still in the store (and
 * before every snapshot): without it nothing of the generation can be restored, and a cycle
 * that finds nothing new never asks the store anything else.
 */
export const RECORD_CHECK_MS = 5_000;

/** The archiver was stopped while a decision waited for the store (`--sync`). */
export class ArchiverStopped extends Error {}

/**
 * The generation's record is gone from the store (deleted, expired by a lifecycle rule): what
 * the generation holds cannot be restored, nor its continuity proven, so a new generation starts
 * (docs/dr.md); the cycle that finds it counts as failed.
 */
class GenerationLost extends Error {}

export class Archiver {
  private gen?: GenerationState;
  private lastSnapshotAt = 0;
  /** When the generation's record was last known to be in the store (epoch ms). */
  private recordSeenAt = 0;
  private stopping = false;
  private finished = false;
  /** Ends every pause in progress (the loop's and those of commit gates retrying). */
  private readonly wakers = new Set<() => void>();
  private loop?: Promise<void>;
  /** The tail of the chain that runs shipping work one piece at a time. */
  private shipping: Promise<unknown> = Promise.resolve();
  /** Per WAL run, the newest seq the store holds. */
  private readonly shipped = new Map<string, number>();
  /** What every cycle reads the streams into (cycles run one at a time: exclusively). */
  private readonly readBuffer = new ReadBuffer();
  /** How long the recent cycles that stored something took (ms), oldest first. */
  private readonly uploadTimes: number[] = [];
  /** Segments stored since the last background compaction looked, and that compaction if running. */
  private storedSinceCompaction = 0;
  private compacting?: Promise<void>;
  /** Bytes the newest cycle stored: at least a large piece's (compact.ts deferLarge), the writer is busy. */
  private lastCycleBytes = 0;
  /** A compaction left groups of large pieces for a cycle that finds nothing to ship. */
  private largeDeferred = false;
  /**
   * With background compaction, the indexes of the generation's segments this archiver stored
   * (the store confirmed each put), newest last: a merge reads its pieces without a HEAD each.
   * At most STORED_INDEXES_KEPT; one forgotten is read from the store as before.
   */
  private readonly storedIndexes = new Map<string, SegmentIndex>();
  readonly health: ArchiveHealth;

  constructor(private readonly opts: ArchiverOptions) {
    this.health = new ArchiveHealth(opts.ws, opts.store.root, {
      metricsFile: opts.metricsFile,
      sync: Boolean(opts.sync),
    });
  }

  get generation(): string | undefined {
    return this.gen?.generation;
  }

  /** Asks the loop to stop after the cycle in flight (its upload finishes first). */
  stop(): void {
    this.stopping = true;
    for (const wake of this.wakers) wake();
  }

  /** Stops the loop started by start(); resolves once its cycle in flight is done. */
  async halt(): Promise<void> {
    this.stop();
    await this.loop;
  }

  /** Runs until stop(); resolves once the cycle in flight is done. */
  async run(): Promise<void> {
    await this.health.started();
    while (!this.stopping) {
      const started = Date.now();
      const result = await this.step();
      const took = Date.now() - started;
      if (result && result.segments > 0) this.uploadTimes.push(took);
      if (this.uploadTimes.length > UPLOADS_REMEMBERED) this.uploadTimes.shift();
      if (this.stopping) break;
      this.compactWhenDue(result !== undefined && result.segments === 0);
      await this.pause(Math.max(0, this.cyclePeriod() - took));
    }
    await this.compacting; // stops before its next merge (the one in flight is stored first)
  }

  /**
   * Starts a background compaction of the generation once enough segments were stored, or, at the
   * first cycle that found nothing to ship, once any were or a merge was deferred: when the writes
   * stop, the pieces stored since the last look would otherwise stay small until the next burst.
   */
  private compactWhenDue(idle: boolean): void {
    const target = this.opts.compactTargetBytes;
    const gen = this.gen;
    const due = idle
      ? this.storedSinceCompaction > 0 || this.largeDeferred
      : this.storedSinceCompaction >= COMPACT_FANOUT;
    if (!target || !gen || this.compacting || !due) return;
    // A look lists the whole generation, which grows by a piece a cycle while the writer is busy,
    // only to leave those pieces where they are (deferLarge): it waits for a cycle that ships less
    // (due then, the count of pieces kept) or nothing.
    if (!idle && this.busy(target)) {
      this.largeDeferred = true;
      return;
    }
    this.storedSinceCompaction = 0;
    this.largeDeferred = false;
    this.compacting = this.compact(gen, target).finally(() => (this.compacting = undefined));
  }

  /** The newest cycle shipped a large piece's worth (1/LARGE_PIECE_SHARE of the target). */
  private busy(targetBytes: number): boolean {
    return this.lastCycleBytes * LARGE_PIECE_SHARE >= targetBytes;
  }

  /**
   * While the cycles ship a large piece's worth each, the pieces are as large as the cycles make
   * them and the writer is busy: merging them would read, check, hash and write them all again
   * beside it (every byte written twice or more, each merge a few fsyncs more on the WAL's disk),
   * to save a few objects. A look that started before the writer got busy leaves those merges
   * for a cycle that ships less (the next look) or nothing (at once), and merges smaller pieces.
   */
  private deferLarge(targetBytes: number): boolean {
    const busy = this.busy(targetBytes);
    if (busy) this.largeDeferred = true;
    return busy;
  }

  private async compact(gen: GenerationState, targetBytes: number): Promise<void> {
    try {
      const r = await compactOwnGeneration(this.opts.store, gen.generation, gen.codec, {
        targetBytes,
        fanout: COMPACT_FANOUT,
        largePieceBytes: targetBytes / LARGE_PIECE_SHARE,
        stopping: () => this.stopping,
        deferLarge: () => this.deferLarge(targetBytes),
        storedIndex: (key) => this.storedIndexes.get(key),
        onMerged: (m, ix) => {
          for (const key of m.replaced) this.storedIndexes.delete(key);
          this.rememberIndex(m.key, ix);
        },
      });
      if (r.merged.length || r.leftovers.length)
        this.opts.log?.({
          event: "compacted",
          generation: gen.generation,
          merged: r.merged.length,
          replaced: r.merged.reduce((n, m) => n + m.replaced.length, 0),
          leftovers: r.leftovers.length,
        });
      await this.health.compactionDone().catch(() => {});
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.opts.log?.({ event: "compact-error", error });
      await this.health.compactionFailed(error).catch(() => {});
    }
  }

  /**
   * How far apart cycles start. A byte made durable just after a cycle read its stream is stored
   * by the next cycle: one period plus that cycle's upload later. So the period is the interval
   * less the slowest recent upload and less a tenth for timers that fire late (never under half
   * the interval, which bounds the object rate): what is durable reaches the store within the
   * interval while uploads stay that fast.
   */
  private cyclePeriod(): number {
    const upload = this.uploadTimes.length ? Math.max(...this.uploadTimes) : 0;
    const interval = this.opts.intervalMs;
    return Math.max(interval / 2, interval - interval / 10 - upload);
  }

  /** Runs the loop in the background (inside the orchestrator); a fatal error goes to `onFatal`. */
  start(onFatal: (err: unknown) => void): void {
    this.loop ??= this.run().catch(onFatal);
  }

  /**
   * Stops the loop, then ships what is durable now (no new snapshot: the orchestrator no longer
   * answers a pause), so the store holds the run up to its last entry. Called once the WAL is closed.
   */
  async finish(): Promise<CycleResult | undefined> {
    this.stop();
    await this.loop;
    const result = this.gen?.snapshot ? await this.step({ snapshots: false }) : undefined;
    this.finished = true;
    await this.health.stopped();
    return result;
  }

  /**
   * `--sync`'s commit gate: resolves once the store holds the WAL through `pos`. A failing store
   * is retried every interval (at most a second), for as long as it fails: decisions wait (the health says why)
   * rather than being acted on without their segment in the store.
   */
  async shippedThrough(pos: { runId: string; seq: number }): Promise<void> {
    const held = () => (this.shipped.get(pos.runId) ?? -1) >= pos.seq;
    this.health.gateWaiting(+1);
    try {
      while (!held()) {
        if (this.finished)
          throw new ArchiverStopped(`archive stopped before ${pos.runId}#${pos.seq} was stored`);
        // Gates waiting together share the cycle: the first one's ship covers the others' groups.
        const ok = await this.guarded(() =>
          this.exclusively(async () => {
            if (!held()) await this.cycle(await this.snapshotted());
          }),
        );
        // A blocked decision retries within a second even with a long interval.
        if (!ok) await this.pause(Math.min(this.opts.intervalMs, GATE_RETRY_MS));
      }
    } finally {
      this.health.gateWaiting(-1);
    }
  }

  /** One round: generation and snapshot when due, then a shipping cycle. Never throws for the store. */
  async step(opts: { snapshots: boolean } = { snapshots: true }): Promise<CycleResult | undefined> {
    let result: CycleResult | undefined;
    await this.guarded(async () => {
      const gen = await this.ensureSnapshotted();
      const due = opts.snapshots && Date.now() - this.lastSnapshotAt >= this.opts.snapshotIntervalMs;
      await this.recordStillThere(gen, due);
      if (due) await this.snapshot(gen);
      result = await this.exclusively(() => this.cycle(gen));
    });
    return result;
  }

  /**
   * Runs `work`; a store failure is logged and recorded (false), a user's error is thrown. A
   * continuity loss ends the generation and `work` runs again at once in a new one: waiting for
   * the next cycle would only leave the store further behind.
   */
  private async guarded(work: () => Promise<void>): Promise<boolean> {
    try {
      try {
        await work();
      } catch (err) {
        if (!(err instanceof ContinuityLost)) throw err;
        await this.endGeneration(err);
        await work();
      }
      return true;
    } catch (err) {
      if (err instanceof ContinuityLost) {
        // Changed again while the new generation started: the next step starts another.
        await this.endGeneration(err);
        return false;
      }
      if (isFatal(err)) throw err;
      if (err instanceof GenerationLost) this.dropGeneration(err.message);
      const message = err instanceof Error ? err.message : String(err);
      this.opts.log?.({ event: "error", error: message });
      await this.health.cycleFailed(message).catch(() => {});
      return false;
    }
  }

  /**
   * Throws GenerationLost when the generation's record is no longer in the store: checked before
   * a snapshot (`now`) and otherwise at most every RECORD_CHECK_MS. Not in a `--sync` gate's
   * cycle, which a decision waits for.
   */
  private async recordStillThere(gen: GenerationState, now: boolean): Promise<void> {
    const at = Date.now();
    if (!now && at - this.recordSeenAt < RECORD_CHECK_MS) return;
    const key = generationKey(gen.generation);
    if (!(await this.opts.store.head(key)))
      throw new GenerationLost(
        `generation ${gen.generation}: its record ${this.opts.store.describe(key)} is missing from the store ` +
          `(deleted or expired), so nothing of it can be restored; a new generation starts`,
      );
    this.recordSeenAt = at;
  }

  /** After a continuity loss: the next step opens a new generation, naming the cause. */
  private async endGeneration(err: ContinuityLost): Promise<void> {
    this.dropGeneration(err.message);
    this.opts.log?.({ event: "continuity-lost", message: err.message });
    await this.health.continuityLost(err.message).catch(() => {});
  }

  /** The next step opens a new generation, its record naming `cause`. */
  private dropGeneration(cause: string): void {
    this.gen = undefined;
    this.storedIndexes.clear();
    this.nextCause = cause;
  }

  /** Runs `work` after the shipping work queued before it. */
  private exclusively<T>(work: () => Promise<T>): Promise<T> {
    const next = this.shipping.then(work, work);
    this.shipping = next.catch(() => {});
    return next;
  }

  private async pause(ms: number): Promise<void> {
    let wake = (): void => {};
    await new Promise<void>((resolve) => {
      const timer = setLongTimeout(resolve, ms);
      wake = () => {
        timer.clear();
        resolve();
      };
      this.wakers.add(wake);
    });
    this.wakers.delete(wake);
  }

  /** The generation, with its first snapshot taken (in turn with other shipping work). */
  private ensureSnapshotted(): Promise<GenerationState> {
    return this.exclusively(() => this.snapshotted());
  }

  /** ensureSnapshotted's work, for a caller already in turn. */
  private async snapshotted(): Promise<GenerationState> {
    const gen = await this.ensureGeneration();
    if (!gen.snapshot) await this.snapshot(gen);
    return gen;
  }

  private rememberIndex(key: string, ix: SegmentIndex): void {
    this.storedIndexes.delete(key);
    this.storedIndexes.set(key, ix);
    if (this.storedIndexes.size > STORED_INDEXES_KEPT)
      this.storedIndexes.delete(this.storedIndexes.keys().next().value!);
  }

  private async cycle(gen: GenerationState): Promise<CycleResult> {
    const result = await shipCycle({
      store: this.opts.store,
      ws: this.opts.ws,
      generation: gen.generation,
      ends: gen.ends,
      codec: gen.codec,
      unsettled: gen.unsettled,
      readBuffer: this.readBuffer,
      settled: gen.settled,
      onSegment: this.opts.compactTargetBytes ? (key, _chunk, ix) => this.rememberIndex(key, ix) : undefined,
    });
    for (const [run, seq] of Object.entries(result.wal)) this.shipped.set(run, seq);
    this.storedSinceCompaction += result.segments;
    this.lastCycleBytes = result.bytes;
    if (this.health.errorsInARow > 0)
      this.opts.log?.({ event: "recovered", after_errors: this.health.errorsInARow });
    if (result.segments > 0)
      this.opts.log?.({
        event: "cycle",
        segments: result.segments,
        bytes: result.bytes,
        stored_bytes: result.storedBytes,
        wal: result.wal,
      });
    const held = await this.health.cycleDone(gen.generation, result);
    for (const h of held.released) this.opts.log?.({ event: "released", run: h.run, after_seq: h.after_seq });
    for (const h of held.found) this.opts.log?.({ event: "held-back", damage: h.damage, message: h.message });
    return result;
  }

  private nextCause?: string;

  private async ensureGeneration(): Promise<GenerationState> {
    if (this.gen) return this.gen;
    const gen = await openGeneration(this.opts.store, this.opts.ws, {
      keys: this.keys,
      plainChosen: this.opts.plainChosen,
      iterations: this.opts.kdfIterations,
      compression: this.opts.compression,
      forceCause: this.nextCause,
    });
    this.nextCause = undefined;
    this.gen = gen;
    this.recordSeenAt = Date.now(); // just read or written
    this.lastSnapshotAt = gen.snapshot ? gen.snapshot.completed_at : 0;
    this.health.windowFrom(gen.firstSnapshotAt);
    this.health.windowTo(gen.windowEnd, true);
    this.storeHolds(gen);
    this.opts.log?.({
      event: "generation",
      generation: gen.generation,
      resumed: gen.resumed,
      ...(gen.resumed ? {} : { cause: gen.record.cause }),
    });
    if (gen.snapshot) await this.nameSnapshotBreaks(gen.snapshot);
    return gen;
  }

  /** Recipients win over a password, as in `dr backup`. */
  private get keys(): WriteKeys {
    if (this.opts.recipients?.length) return { recipients: this.opts.recipients };
    return this.opts.password !== undefined ? { password: this.opts.password } : {};
  }

  /** What the store already holds of each WAL run (a resumed generation's, a first snapshot's). */
  private storeHolds(gen: GenerationState): void {
    const held: Record<string, number> = {};
    for (const [stream, end] of gen.ends) {
      const run = walRunOf(stream);
      if (run !== undefined && end.seq !== undefined) held[run] = end.seq;
    }
    for (const [run, seq] of Object.entries(held))
      if (seq > (this.shipped.get(run) ?? -1)) this.shipped.set(run, seq);
    this.health.storeHolds(held);
  }

  private async snapshot(gen: GenerationState): Promise<void> {
    // Taken before the attempt: a snapshot that fails after its archive was stored (its index
    // not) leaves that name behind, and a retake has other bytes (docs/formats.md "Objects
    // written twice"), so the next attempt uses the next number.
    const number = gen.nextSnapshot++;
    let index: SnapshotIndex;
    try {
      index = await takeBaseSnapshot({
        store: this.opts.store,
        ws: this.opts.ws,
        generation: gen.generation,
        number,
        backup: { ...this.keys, auditKeyPath: this.opts.auditKeyPath },
      });
    } catch (err) {
      gen.orphans.push(snapshotKey(gen.generation, number, schemeOf(this.keys)));
      throw err;
    }
    gen.orphans = await removeInterrupted(this.opts.store, gen.orphans);
    if (!gen.snapshot) {
      for (const [stream, end] of Object.entries(index.streams)) gen.ends.set(stream, end);
      this.health.windowFrom(index.completed_at);
      this.storeHolds(gen);
    }
    // A snapshot taken beside a cycle must not move the generation's newest back.
    if (!gen.snapshot || gen.snapshot.number < number) gen.snapshot = index;
    this.lastSnapshotAt = index.completed_at;
    this.health.uploaded(index.completed_at);
    this.health.windowTo(index.completed_at);
    this.opts.log?.({ event: "snapshot", generation: gen.generation, number, key: index.key });
    if (gen.snapshot === index) await this.nameSnapshotBreaks(index);
  }

  /**
   * The WAL breaks the generation's newest snapshot holds as found (its index's `wal_breaks`):
   * one error each and a `snapshot-damage` event, when a snapshot takes them and again by every
   * archiver that resumes the generation (so each `dr archive --once` of it exits 9), until a
   * new generation starts from an intact workspace.
   */
  private async nameSnapshotBreaks(index: SnapshotIndex): Promise<void> {
    const breaks = index.wal_breaks ?? [];
    if (!this.health.snapshotBreaks(index.number, breaks)) return;
    for (const b of breaks) {
      const message =
        `damaged WAL: ${describeSnapshotBreak(b)}; ` +
        `base snapshot ${index.number} holds it as found (its manifest's wal_breaks); wal verify names it`;
      await this.health.damageFound(message);
      this.opts.log?.({ event: "snapshot-damage", message });
    }
  }
}

/** Errors that are the user's to fix, not the store's to recover from (a bad password, a bad workspace). */
function isFatal(err: unknown): boolean {
  const code = (err as { exitCode?: number }).exitCode;
  return code === 2 || code === 4;
}
