/**
 * The archiver's health, as `dr status` and the metrics file show it: lag (seconds and WAL
 * entries not yet in the store), the last successful upload, the window, the generation, and
 * errors (of the shipping cycles, and of background compaction apart). Kept in
 * `runtime/archive-status.json` (atomic replace when it starts, after a cycle or a background
 * compaction, and when it stops), read by other processes; also written as `bernstein_archive_*`
 * metrics to the `--metrics-file` when one is given (archive-metrics.ts).
 *
 * A cycle that only moves the counters and times on is written at most every STATUS_EVERY_MS: at
 * a 100 ms interval a write per cycle (two fsyncs, a listing, a read of every WAL's tail) cost the
 * WAL writer beside it more than the shipping did. What a reader acts on is written at once: a
 * start, a stop, a new generation, the first cycle, every failure and the success that ends a
 * run of them. Shipping never resumes from this file (a restart resumes from the store's
 * listing), but the health does: from its first cycle or failure, an archiver of the same
 * workspace and destination carries on what the previous one established (resume), so a run of
 * `dr archive --once` that fails keeps the last upload, the caught-up time and the window, and its
 * lag and errors in a row go on growing from them, as one long-running archiver's would. Its
 * announcement (started) is its own: pid and destination, no generation or cycle yet, which is
 * how a reader tells that this archiver has not cycled.
 */
import { statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { readTailPosition } from "../wal/reader.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { atomicWriteFile } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { isHome, isProcessAlive, processHome } from "../workspace/process.js";
import { writeArchiveMetrics } from "./archive-metrics.js";
import type { WalError } from "../wal/chain.js";
import type { ArchiveStatus, HeldBackStatus } from "./archive-status.js";
import { listStreams } from "./streams.js";
import { walRunOf } from "./names.js";
import type { CycleResult, HeldBack } from "./shipper.js";

export const ARCHIVE_STATUS = ["runtime", "archive-status.json"] as const;
/** At most this long between a change of the status and its write (see the top of the file). */
export const STATUS_EVERY_MS = 1000;
export type { ArchiveStatus, HeldBackStatus };

/** What a cycle changed in the held-back bytes: newly reported, and released (shipped or cut). */
export interface HeldBackNews {
  found: HeldBackStatus[];
  released: HeldBackStatus[];
}

export interface HealthOptions {
  metricsFile?: string;
  sync: boolean;
}

export class ArchiveHealth {
  private status: ArchiveStatus & Required<Pick<ArchiveStatus, "wal_shipped_seq" | "wal_shipped_bytes">>;
  /** When the status was last written (epoch ms; 0: never). */
  private writtenAt = 0;
  /** Until a cycle catches up, the store is known to hold everything only as of this archiver's start. */
  private readonly startedAt = Date.now();
  /** Per stream, what the last cycle held back and since when (reported or not yet). */
  private heldSeen = new Map<string, { h: HeldBack; since: number }>();
  private cycled = false;
  /** The WAL breaks this archiver named (snapshotBreaks; undefined: none known yet): a resumed status's are named again. */
  private namedBreaks?: string;
  /** Reading the previous archiver's status, once (resume). */
  private resumed?: Promise<void>;
  private previousStatus?: Promise<ArchiveStatus | undefined>;

  constructor(
    private readonly ws: Workspace,
    destination: string,
    private readonly opts: HealthOptions = { sync: false },
  ) {
    this.status = {
      destination,
      pid: process.pid,
      ...processHome(ws.root),
      generation: null,
      updated_at: new Date().toISOString(),
      caught_up_at: null,
      last_upload_at: null,
      state: "ok",
      lag_seconds: 0,
      lag_entries: 0,
      lag_bytes: 0,
      held_back: [],
      wal_breaks: [],
      errors_total: 0,
      errors_in_a_row: 0,
      last_error: null,
      segments_total: 0,
      bytes_total: 0,
      window_start_at: null,
      window_end_at: null,
      sync: opts.sync,
      decisions_waiting: 0,
      last_compaction_at: null,
      compaction_errors_total: 0,
      compaction_errors_in_a_row: 0,
      last_compaction_error: null,
      continuity_losses_total: 0,
      last_continuity_loss: null,
      stopped_at: null,
      wal_shipped_seq: {},
      wal_shipped_bytes: {},
    };
  }

  /**
   * Takes over what the previous archiver of this workspace and destination established and this
   * one does not know yet: the generation, the last upload, when the store last held everything
   * (lag_seconds runs from it while cycles fail), the window, the WAL the store holds (lag_entries
   * is measured against it), the WAL breaks, the errors in a row and the last error, and the
   * compactions' state. Counters (`*_total`) count this archiver's own. Every method that writes
   * or changes those fields resumes first; the setters before it (windowFrom, storeHolds,
   * uploaded, snapshotBreaks) only set what this archiver found, which wins.
   */
  private resume(): Promise<void> {
    return (this.resumed ??= this.takeOver());
  }

  /** The previous archiver's status, read once, before this one's announcement replaces it. */
  private previous(): Promise<ArchiveStatus | undefined> {
    return (this.previousStatus ??= readArchiveStatus(this.ws.root));
  }

  private async takeOver(): Promise<void> {
    const prev = await this.previous();
    const s = this.status;
    if (!prev || prev.destination !== s.destination) return;
    s.generation ??= prev.generation;
    s.last_upload_at ??= prev.last_upload_at;
    s.caught_up_at ??= prev.caught_up_at;
    s.window_start_at ??= prev.window_start_at;
    s.window_end_at ??= prev.window_end_at ?? null;
    s.wal_shipped_seq = { ...prev.wal_shipped_seq, ...s.wal_shipped_seq };
    s.wal_shipped_bytes = { ...prev.wal_shipped_bytes, ...s.wal_shipped_bytes };
    if (this.namedBreaks === undefined) s.wal_breaks = prev.wal_breaks ?? [];
    s.errors_in_a_row += prev.errors_in_a_row;
    s.last_error ??= prev.last_error;
    s.last_compaction_at ??= prev.last_compaction_at;
    s.compaction_errors_in_a_row += prev.compaction_errors_in_a_row ?? 0;
    s.last_compaction_error ??= prev.last_compaction_error ?? null;
    s.last_continuity_loss ??= prev.last_continuity_loss ?? null;
  }

  /** Announces the archiver (another one then refuses to archive this workspace: assertNoOtherArchiver). */
  async started(): Promise<void> {
    await this.previous();
    this.status.stopped_at = null;
    await this.write(new Date());
  }

  async stopped(): Promise<void> {
    await this.resume();
    this.status.stopped_at = new Date().toISOString();
    await this.write(new Date());
  }

  /** The start of the generation's window (its oldest snapshot), once known. */
  windowFrom(epochMs: number | undefined): void {
    this.status.window_start_at = epochMs === undefined ? null : new Date(epochMs).toISOString();
  }

  /**
   * The newest instant the generation's window reaches (window.ts windowEnd): as the store held it
   * (`reset`, a generation opened), or moved on by a snapshot or a cycle's segments.
   */
  windowTo(epochMs: number | undefined, reset = false): void {
    const was = this.status.window_end_at ? Date.parse(this.status.window_end_at) : undefined;
    const to = reset || was === undefined ? epochMs : epochMs === undefined ? was : Math.max(was, epochMs);
    this.status.window_end_at = to === undefined || to <= 0 ? null : new Date(to).toISOString();
  }

  /** Per WAL run, the newest seq the store holds from before this archiver's own cycles. */
  storeHolds(wal: Record<string, number>): void {
    this.status.wal_shipped_seq = { ...this.status.wal_shipped_seq, ...wal };
  }

  /** A base snapshot is stored: an upload as much as a segment. */
  uploaded(epochMs: number): void {
    this.status.last_upload_at = new Date(epochMs).toISOString();
  }

  gateWaiting(delta: number): void {
    this.status.decisions_waiting += delta;
  }

  get errorsInARow(): number {
    return this.status.errors_in_a_row;
  }

  snapshot(): ArchiveStatus {
    return { ...this.status };
  }

  async cycleDone(generation: string, r: CycleResult): Promise<HeldBackNews> {
    await this.resume();
    const now = new Date();
    const s = this.status;
    const held = this.holdBack(r.held, now.getTime());
    const changed = held.found.length > 0 || held.released.length > 0;
    const news = s.generation !== generation || s.errors_in_a_row > 0 || !this.cycled || changed;
    this.cycled = true;
    s.generation = generation;
    s.errors_in_a_row = 0;
    // The store holds everything durable only when nothing is held back.
    if (s.held_back.length === 0) s.caught_up_at = now.toISOString();
    if (r.segments > 0) s.last_upload_at = now.toISOString();
    if (r.reach > 0) this.windowTo(r.reach);
    s.segments_total += r.segments;
    s.bytes_total += r.storedBytes;
    s.wal_shipped_seq = { ...s.wal_shipped_seq, ...r.wal };
    s.wal_shipped_bytes = { ...s.wal_shipped_bytes, ...r.walBytes };
    if (news || this.due(now)) await this.write(now);
    return held;
  }

  /**
   * Updates `held_back` from a cycle's findings. Complete lines that fail their check are
   * reported at once; a last line without its newline only once a second cycle finds it
   * unchanged (a write in progress is visible for an instant). Damage counts as one error when
   * first reported, and names itself in `last_error`; a torn tail is no error.
   */
  private holdBack(found: HeldBack[], now: number): HeldBackNews {
    const before = new Map(this.status.held_back.map((h) => [h.stream, h]));
    const seen = new Map<string, { h: HeldBack; since: number }>();
    const reported: HeldBackStatus[] = [];
    const news: HeldBackNews = { found: [], released: [] };
    for (const h of found) {
      const prev = this.heldSeen.get(h.stream);
      const same = prev !== undefined && prev.h.offset === h.offset;
      const since = same ? prev.since : now;
      seen.set(h.stream, { h, since });
      if (h.lines === 0 && !(same && prev.h.bytes === h.bytes)) continue;
      const status = heldBackStatus(h, since);
      reported.push(status);
      const old = before.get(h.stream);
      if (old && old.offset === h.offset && old.damage === h.damage) continue;
      news.found.push(status);
      if (h.damage) {
        this.status.errors_total++;
        this.status.last_error = status.message;
      }
    }
    for (const old of before.values())
      if (!reported.some((h) => h.stream === old.stream && h.offset === old.offset)) news.released.push(old);
    this.heldSeen = seen;
    this.status.held_back = reported;
    return news;
  }

  /** Whether a write that carries only counters and times is due (STATUS_EVERY_MS). */
  private due(now: Date): boolean {
    return now.getTime() - this.writtenAt >= STATUS_EVERY_MS;
  }

  /**
   * The WAL breaks the generation's newest base snapshot holds (none: intact, or a new
   * generation); true when they differ from those already shown, so the caller names them.
   */
  snapshotBreaks(snapshot: number, breaks: readonly WalError[]): boolean {
    const key = JSON.stringify(breaks.map((b) => [b.run_id, b.seq, b.line, b.kind]));
    const news = key !== (this.namedBreaks ?? "[]");
    this.namedBreaks = key;
    this.status.wal_breaks = breaks.map((b) => ({ ...b, snapshot }));
    return news && breaks.length > 0;
  }

  /** Damage found in the workspace (not the store's doing): one error, named in `last_error`. */
  async damageFound(message: string): Promise<void> {
    await this.resume();
    this.status.errors_total++;
    this.status.last_error = message;
    await this.write(new Date());
  }

  /**
   * A workspace file no longer holds what the store holds: a change in the workspace, not a
   * failure of the store. A new generation starts at once; errors stay as they were.
   */
  async continuityLost(message: string): Promise<void> {
    await this.resume();
    const now = new Date();
    this.status.continuity_losses_total = (this.status.continuity_losses_total ?? 0) + 1;
    this.status.last_continuity_loss = { at: now.toISOString(), message };
    await this.write(now);
  }

  async cycleFailed(message: string): Promise<void> {
    await this.resume();
    this.status.errors_total++;
    this.status.errors_in_a_row++;
    this.status.last_error = message;
    await this.write(new Date());
  }

  /** A background compaction completed (it merged, cleaned up, or found nothing to do). */
  async compactionDone(): Promise<void> {
    await this.resume();
    const now = new Date();
    const news = this.status.compaction_errors_in_a_row > 0 || this.status.last_compaction_at === null;
    this.status.last_compaction_at = now.toISOString();
    this.status.compaction_errors_in_a_row = 0;
    if (news || this.due(now)) await this.write(now);
  }

  /** A background compaction failed: shown beside the cycles' own errors, never counted as one. */
  async compactionFailed(message: string): Promise<void> {
    await this.resume();
    const now = new Date();
    this.status.compaction_errors_total++;
    this.status.compaction_errors_in_a_row++;
    this.status.last_compaction_error = { at: now.toISOString(), message };
    await this.write(now);
  }

  private async write(now: Date): Promise<void> {
    const s = this.status;
    this.writtenAt = now.getTime();
    s.updated_at = now.toISOString();
    s.lag_entries = await walLagEntries(this.ws.root, s);
    s.lag_bytes = s.held_back.reduce((n, h) => n + h.bytes, 0);
    s.state = s.errors_in_a_row > 0 ? "failing" : s.held_back.length > 0 ? "stalled" : "ok";
    const since = s.caught_up_at ? Date.parse(s.caught_up_at) : this.startedAt;
    const heldSince = Math.min(...s.held_back.map((h) => Date.parse(h.since)));
    s.lag_seconds =
      s.errors_in_a_row > 0
        ? (now.getTime() - since) / 1000
        : s.held_back.length > 0
          ? (now.getTime() - heldSince) / 1000
          : 0;
    await atomicWriteFile(this.ws.p(...ARCHIVE_STATUS), JSON.stringify(s) + "\n");
    // The metrics are a view of this status: failing to write them never fails a cycle.
    if (this.opts.metricsFile)
      s.metrics_error = await writeArchiveMetrics(this.opts.metricsFile, this.ws.root, s).then(
        () => null,
        (err: Error) => `${this.opts.metricsFile}: ${err.message}`,
      );
  }
}

/**
 * WAL entries durable in the workspace at `root` and not in the store, as `s` says what the store
 * holds: up to each run's newest valid entry, or its held-back lines (at least one: a line
 * without its newline) when they are more.
 */
async function walLagEntries(
  root: string,
  s: Pick<ArchiveStatus, "wal_shipped_seq" | "wal_shipped_bytes" | "held_back">,
): Promise<number> {
  const seqs = s.wal_shipped_seq ?? {};
  const bytes = s.wal_shipped_bytes ?? {};
  let lag = 0;
  for (const stream of await listStreams(root)) {
    const run = walRunOf(stream);
    if (run === undefined) continue;
    const file = path.join(root, stream);
    // A run whose file ends where the store's copy ends is not behind: no tail to read (most
    // runs of a workspace are finished and wholly shipped).
    const size = sizeOf(file);
    if (bytes[run] !== undefined && size === bytes[run]) continue;
    const tail = await readTailPosition(file).catch(() => undefined);
    // Shorter than the store's copy: the file no longer holds what the store holds (a history
    // rewritten under a stopped archiver), so none of its entries counts as archived.
    const rewritten = bytes[run] !== undefined && size !== undefined && size < bytes[run];
    const behind = tail ? Math.max(0, tail.last_seq - (rewritten ? -1 : (seqs[run] ?? -1))) : 0;
    const held = (s.held_back ?? []).find((h) => h.stream === stream);
    lag += Math.max(behind, held ? Math.max(1, held.lines) : 0);
  }
  return lag;
}

/** The size of `file` (undefined when it cannot be read). */
function sizeOf(file: string): number | undefined {
  try {
    return statSync(file, { throwIfNoEntry: false })?.size;
  } catch {
    return undefined;
  }
}

/** A held-back run as the status shows it, with its one-line message. */
function heldBackStatus(h: HeldBack, sinceMs: number): HeldBackStatus {
  const what = h.failure ?? "its last line has no newline";
  const where = `${h.bytes} bytes of ${h.run} after seq ${h.after_seq} (byte ${h.offset})`;
  const message = h.damage
    ? `damaged WAL: ${h.run}${h.claimed_seq !== null ? ` seq ${h.claimed_seq}` : ""} at byte ${h.offset} fails its check (${what}) ` +
      `${h.valid_seq_after !== null ? `with valid entries after it (seq ${h.valid_seq_after})` : "at the end of a closed run"}; ` +
      `${where} are not shipped until it is repaired (wal verify names it)`
    : `held back: ${where}, not yet valid (${what}): an open run's torn tail, cut by the writer's next start`;
  return {
    stream: h.stream,
    run: h.run,
    after_seq: h.after_seq,
    offset: h.offset,
    bytes: h.bytes,
    lines: h.lines,
    damage: h.damage,
    since: new Date(sinceMs).toISOString(),
    message,
  };
}

/** The archiver's newest status, whether it still runs and how old the status is (archiveHealth). */
export type ArchiveHealthReport = ArchiveStatus & { running: boolean; status_age_seconds: number };

/**
 * What `dr status` shows of the archiver: its newest status, whether it still runs, how old that
 * is. The lag of an archiver that no longer runs is measured now, the workspace's WAL against
 * what the store held when it stopped: decisions made since are what losing this host would lose
 * (a status file that does not say what the store held keeps the lag it was written with).
 */
export async function archiveHealth(root: string, now = Date.now()): Promise<ArchiveHealthReport | null> {
  const s = await readArchiveStatus(root);
  if (!s) return null;
  const running = isRunning(s);
  const health = { ...s, running, status_age_seconds: (now - Date.parse(s.updated_at)) / 1000 };
  if (!running && s.wal_shipped_seq) {
    // Entries only: bytes held back then may since have been cut by a start, or become valid.
    health.lag_entries = await walLagEntries(root, { ...s, held_back: [] });
    health.lag_seconds =
      health.lag_entries === 0 ? 0 : (now - Date.parse(s.caught_up_at ?? s.updated_at)) / 1000;
  }
  return health;
}

/**
 * Whether archiveHealth's lag is what the store lacks now: a running archiver's, or a stopped
 * one's measured against what the store held (not an older status file's, as it was written).
 */
export const lagIsCurrent = (a: ArchiveHealthReport): boolean => a.running || a.wal_shipped_seq !== undefined;

/** When an archiver that no longer runs stopped: as it said on stopping, or its last status (a kill). */
export const stoppedSince = (a: ArchiveHealthReport): string => a.stopped_at ?? a.updated_at;

/**
 * The newest status an archiver wrote for this workspace, if any: a status that names another
 * host or folder came with a copy of the files and describes another workspace's archiver.
 */
export async function readArchiveStatus(root: string): Promise<ArchiveStatus | undefined> {
  let s: ArchiveStatus;
  try {
    s = JSON.parse(await readFile(path.join(root, ...ARCHIVE_STATUS), "utf8")) as ArchiveStatus;
  } catch {
    return undefined;
  }
  return isHome(s, root) ? s : undefined;
}

const isRunning = (s: ArchiveStatus): boolean => !s.stopped_at && isProcessAlive(s.pid);

/**
 * Refuses a second archiver for this workspace (exit 3): two would cut the same streams at
 * different points into overlapping segments of one generation, and overwrite each other's
 * status. One archiver per workspace, whichever hosts it (`dr archive` or `start --archive-to`).
 */
export async function assertNoOtherArchiver(root: string, what: string): Promise<void> {
  const s = await readArchiveStatus(root);
  if (!s || s.pid === process.pid || !isRunning(s)) return;
  throw new UserError(
    `${what}: pid ${s.pid} already archives this workspace to ${s.destination}; stop it first (one archiver per workspace)`,
    ExitCode.LOCKED,
  );
}
