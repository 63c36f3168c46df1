/**
 * WAL replay: re-executes intents that previous runs wrote but never committed.
 *
 * For every previous run (not the current one, not closed) in run order, the run's WAL is
 * streamed once; an intent (`committed: false`) is pending when no commit of the same
 * decision_type and the same inputs follows it in that run. Informational types are skipped.
 * For each pending intent, in order:
 *   1. older than the staleness window (default 1 h): counted and listed as stale, not executed;
 *   2. `<decision_type>:<entry_hash>` already in the idempotency store: skipped as idempotent;
 *   3. otherwise the handler registered for its type runs; only after it resolves is the marker
 *      written (fsynced); a handler that throws counts as failed and keeps its run open (the next
 *      start retries it); a type without a handler counts as failed (and `unhandled`), is listed,
 *      and does not keep the run open (no handler will appear by retrying).
 * Then a `wal_replay_completed` summary entry goes to the current run's WAL, and every replayed
 * run without failures gets its closed marker (a run with failures stays open: the next start
 * retries those entries).
 *
 * Crash safety (SIGKILL between a handler and its marker): the store alone cannot tell that the
 * handler already ran, so that one entry's handler is called again on the next start. Handlers
 * MUST be idempotent (check their own durable effect before acting); with that, and the store
 * consulted first, each entry's effect happens at most once. Tested with a real SIGKILL.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../json/canonical.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { isInformational } from "./reducer.js";
import type { Workspace } from "../workspace/layout.js";
import type { WalEntry } from "../wal/entry.js";
import { IdempotencyStore } from "../wal/idempotency.js";
import { listRuns, readTailPosition, readWalEntries } from "../wal/reader.js";
import { readClosedMarker, writeClosedMarker } from "../wal/recovery.js";
import type { WalWriter } from "../wal/writer.js";

export interface ReplayContext {
  run_id: string;
  /** The current run (where handlers append their own intents and commits). */
  current_run_id: string;
}

/** Re-executes one intent. Must be idempotent: it may be called again after a crash. */
export type ReplayHandler = (entry: WalEntry, ctx: ReplayContext) => Promise<void>;

export const DEFAULT_STALE_AFTER_MS = 60 * 60 * 1000;
const MAX_LISTED = 100;

export interface ReplayOptions {
  /** The run doing the replay; never replayed itself. */
  currentRunId: string;
  /** Handlers by decision_type. */
  handlers: Map<string, ReplayHandler> | Record<string, ReplayHandler>;
  /** The current run's writer, for the `wal_replay_completed` entry (omit to skip writing it). */
  writer?: WalWriter;
  /**
   * Intents older than this are stale: reported, not executed. Default: $BERNSTEIN_REPLAY_STALE_AFTER
   * (seconds) when set, else 1 hour.
   */
  staleAfterMs?: number;
  /** Wall clock in ms (tests). */
  now?: () => number;
  /** An already open store (default: opened here). */
  store?: IdempotencyStore;
  /** Write closed markers for replayed runs (default true). */
  closeReplayed?: boolean;
}

export interface ReplayedRef {
  run_id: string;
  seq: number;
  entry_hash: string;
  decision_type: string;
}

export interface ReplaySummary {
  /** Pending intents found (informational types excluded). */
  found: number;
  replayed: number;
  skipped_idempotent: number;
  stale: number;
  /** Of `failed`: intents of a type with no registered handler (e.g. foreign Python types). */
  unhandled: number;
  failed: number;
  /** Previous, not closed runs examined. */
  runs: string[];
  /** Runs given a closed marker. */
  closed: string[];
  stale_entries: (ReplayedRef & { age_s: number })[];
  failures: (ReplayedRef & { error: string })[];
  /** Problems reading the store or the WALs (reported, not fatal). */
  warnings: string[];
}

/** A summary with nothing found yet (also what a caller holds before its replay has run). */
export function emptyReplaySummary(): ReplaySummary {
  return {
    found: 0,
    replayed: 0,
    skipped_idempotent: 0,
    stale: 0,
    failed: 0,
    unhandled: 0,
    runs: [],
    closed: [],
    stale_entries: [],
    failures: [],
    warnings: [],
  };
}

function intentKey(e: WalEntry): string {
  return e.decision_type + "\u0000" + createHash("sha256").update(canonicalJson(e.inputs)).digest("hex");
}

/**
 * The pending intents of one run's WAL, in seq order (memory: the intents not yet settled).
 * `complete` is false when the WAL could not be read to its end (the run is then not closed).
 */
async function pendingIntents(
  file: string,
  runId: string,
  warnings: string[],
): Promise<{ entries: WalEntry[]; complete: boolean }> {
  const open = new Map<string, WalEntry[]>();
  // Insertion ordered; settled intents are deleted, so memory holds only unsettled ones.
  const unsettled = new Set<WalEntry>();
  let complete = true;
  try {
    for await (const { entry } of readWalEntries(file, { runId })) {
      if (isInformational(entry.decision_type)) continue;
      const key = intentKey(entry);
      const list = open.get(key);
      if (!entry.committed) {
        if (list) list.push(entry);
        else open.set(key, [entry]);
        unsettled.add(entry);
      } else if (list) {
        // A commit settles the oldest open intent with the same type and inputs.
        unsettled.delete(list.shift()!);
        if (!list.length) open.delete(key);
      }
    }
  } catch (err) {
    complete = false;
    warnings.push(
      `replay: reading ${file} stopped: ${(err as Error).message}; later entries not replayed, run left open`,
    );
  }
  return { entries: [...unsettled], complete };
}

/**
 * `$BERNSTEIN_REPLAY_STALE_AFTER` in ms (undefined when unset or empty). `start` reads it before
 * it takes the lock or opens a run, so a bad value refuses the start and changes nothing.
 */
export function staleAfterFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.BERNSTEIN_REPLAY_STALE_AFTER;
  if (raw === undefined || raw === "") return undefined;
  const s = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(s) || s < 0) {
    throw new UserError(
      `BERNSTEIN_REPLAY_STALE_AFTER must be a number of seconds >= 0 (such as 3600), got ${JSON.stringify(raw)}`,
      ExitCode.USAGE,
    );
  }
  return s * 1000;
}

export async function replayWal(ws: Workspace, opts: ReplayOptions): Promise<ReplaySummary> {
  const handlers = opts.handlers instanceof Map ? opts.handlers : new Map(Object.entries(opts.handlers));
  const staleAfter = opts.staleAfterMs ?? staleAfterFromEnv() ?? DEFAULT_STALE_AFTER_MS;
  const now = opts.now ?? Date.now;
  const store = opts.store ?? (await IdempotencyStore.open(ws));
  const summary = emptyReplaySummary();
  summary.warnings.push(...store.problems.map((p) => `idempotency store line ${p.line}: ${p.message}`));
  for (const run of await listRuns(ws)) {
    if (run.run_id === opts.currentRunId) continue;
    if (await readClosedMarker(ws, run.run_id)) continue;
    summary.runs.push(run.run_id);
    const pending = await pendingIntents(run.file, run.run_id, summary.warnings);
    let runFailed = !pending.complete;
    for (const entry of pending.entries) {
      summary.found++;
      const ref: ReplayedRef = {
        run_id: run.run_id,
        seq: entry.seq,
        entry_hash: entry.entry_hash,
        decision_type: entry.decision_type,
      };
      if (store.has(entry.decision_type, entry.entry_hash)) {
        summary.skipped_idempotent++;
        continue;
      }
      const ageMs = now() - entry.timestamp * 1000;
      if (ageMs > staleAfter) {
        summary.stale++;
        if (summary.stale_entries.length < MAX_LISTED) {
          summary.stale_entries.push({ ...ref, age_s: Math.round(ageMs / 1000) });
        }
        continue;
      }
      const handler = handlers.get(entry.decision_type);
      if (!handler) {
        // Nothing can run it until a handler exists: reported (here and in the WAL summary),
        // counted as failed, but it does not keep the run open (that would churn every start).
        summary.failed++;
        summary.unhandled++;
        if (summary.failures.length < MAX_LISTED) {
          summary.failures.push({ ...ref, error: `no replay handler for ${entry.decision_type}` });
        }
        continue;
      }
      try {
        await handler(entry, { run_id: run.run_id, current_run_id: opts.currentRunId });
      } catch (err) {
        summary.failed++;
        runFailed = true;
        if (summary.failures.length < MAX_LISTED)
          summary.failures.push({ ...ref, error: (err as Error).message });
        continue;
      }
      // Only now: the handler succeeded.
      await store.markExecuted({ ...ref });
      summary.replayed++;
    }
    if (!runFailed && opts.closeReplayed !== false) {
      const tail = await readTailPosition(run.file).catch(() => undefined);
      await writeClosedMarker(ws, {
        run_id: run.run_id,
        closed_at: new Date(now()).toISOString(),
        last_seq: tail?.last_seq ?? -1,
        last_hash: tail?.last_hash ?? "",
        reason: `replayed by ${opts.currentRunId}`,
      });
      summary.closed.push(run.run_id);
    }
  }
  if (opts.writer && summary.runs.length > 0) {
    await opts.writer.append({
      decision_type: "wal_replay_completed",
      inputs: {},
      output: {
        found: summary.found,
        replayed: summary.replayed,
        skipped_idempotent: summary.skipped_idempotent,
        stale: summary.stale,
        failed: summary.failed,
        unhandled: summary.unhandled,
        runs: summary.runs,
        closed: summary.closed,
        stale_entries: summary.stale_entries.map((s) => ({ ...s })),
        failures: summary.failures.map((f) => ({ ...f })),
      },
      committed: true,
    });
  }
  return summary;
}
