/**
 * Recovery helpers: the uncommitted index, closed markers, open intents, orphaned claims.
 */
import { constants as fsc } from "node:fs";
import { open, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { wrapError } from "../errors/errors.js";
import { canonicalJson } from "../json/canonical.js";
import {
  FILE_MODE,
  atomicWriteFile,
  durableRename,
  fsyncDir,
  fsyncHandle,
  tempPathFor,
  writeAllAt,
} from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";
import type { WalEntry } from "./entry.js";
import { listRuns, readWalEntries, type RunInfo } from "./reader.js";
import { closedMarkerFile } from "./run-files.js";

/** `runtime/wal/uncommitted.idx.json`: JSONL rows {run_id, seq, entry_hash}, one per intent. */
export function uncommittedIndexPath(ws: Workspace): string {
  return path.join(ws.walDir, "uncommitted.idx.json");
}

export interface UncommittedRow {
  run_id: string;
  seq: number;
  entry_hash: string;
}

/** One index line, in the Python field order. */
export function uncommittedRowLine(row: UncommittedRow): string {
  return JSON.stringify({ run_id: row.run_id, seq: row.seq, entry_hash: row.entry_hash }) + "\n";
}

/** Opens the index for appending (creating it durably). The writer keeps this handle open. */
export async function openUncommittedIndexForAppend(ws: Workspace) {
  const file = uncommittedIndexPath(ws);
  try {
    return await open(file, fsc.O_WRONLY | fsc.O_APPEND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const fh = await open(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, FILE_MODE);
    await fsyncDir(path.dirname(file));
    return fh;
  }
}

/** `<run>.wal.closed`: written atomically when a run shuts down cleanly. */
export function closedMarkerPath(ws: Workspace, runId: string): string {
  return closedMarkerFile(ws.walDir, runId);
}

export interface ClosedMarker {
  run_id: string;
  closed_at: string;
  /** Newest seq in the run (-1 when the run has no entry). */
  last_seq: number;
  last_hash: string;
  reason?: string;
}

/** Marks a run as cleanly closed (atomic replace, folder fsynced). */
export async function writeClosedMarker(ws: Workspace, marker: ClosedMarker): Promise<void> {
  await atomicWriteFile(closedMarkerPath(ws, marker.run_id), JSON.stringify(marker) + "\n");
}

/**
 * A marker file that is there but cannot be read as a marker: not a JSON object, another run's,
 * or `last_seq`/`last_hash` of the wrong type. Its run was closed (only a closing writer or
 * recovery writes one), but the end it recorded is lost, so a rollback of the run can no longer be
 * ruled out: the rollback check reports it as a break, and nothing rewrites it.
 */
export interface CorruptClosedMarker {
  corrupt: string;
}

/**
 * The run's closed marker; undefined only when the run has none (not closed). A marker that is
 * there but unreadable is returned as `{corrupt}`: the run counts as closed (nothing replays it,
 * repairs its tail or writes its marker again), and `findWalRollbacks` names it.
 */
export async function readClosedMarker(
  ws: Workspace,
  runId: string,
): Promise<ClosedMarker | CorruptClosedMarker | undefined> {
  return readClosedMarkerIn(ws.walDir, runId);
}

/** `readClosedMarker` for a WAL folder that is not (or not yet) a workspace's, such as a backup's. */
export async function readClosedMarkerIn(
  walDir: string,
  runId: string,
): Promise<ClosedMarker | CorruptClosedMarker | undefined> {
  let text: string;
  try {
    text = await readFile(closedMarkerFile(walDir, runId), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return { corrupt: `unreadable: ${(err as Error).message}` };
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { corrupt: `not JSON (${Buffer.byteLength(text)} bytes)` };
  }
  if (typeof m !== "object" || m === null || Array.isArray(m)) return { corrupt: "not a JSON object" };
  // The Python original's marker is a JSON object; the fields below are checked only where present.
  const o = m as Record<string, unknown>;
  if ("run_id" in o && o.run_id !== runId) return { corrupt: `it names run ${JSON.stringify(o.run_id)}` };
  if ("last_seq" in o && !(Number.isInteger(o.last_seq) && (o.last_seq as number) >= -1))
    return { corrupt: `last_seq ${JSON.stringify(o.last_seq)} is not a seq` };
  if ("last_hash" in o && typeof o.last_hash !== "string")
    return { corrupt: `last_hash ${JSON.stringify(o.last_hash)} is not a hash` };
  return o as unknown as ClosedMarker;
}

/**
 * Whether the run in `walDir` was closed cleanly (or marked recovered), its marker readable or
 * not: no writer is left to tear its tail, so bytes after its newest valid entry are damage, not a
 * torn append.
 */
export async function isRunClosed(walDir: string, runId: string): Promise<boolean> {
  return (await readClosedMarkerIn(walDir, runId)) !== undefined;
}

/** Intent and commit pair up by decision type and canonical inputs. */
export function intentKey(entry: Pick<WalEntry, "decision_type" | "inputs">): string {
  return `${entry.decision_type}\u0000${canonicalJson(entry.inputs)}`;
}

/**
 * Intents (committed=false) of one run that no later commit of the same type and inputs closes,
 * in seq order. Streaming; memory grows with the open intents only. `fromSeq` skips the start.
 */
export async function findOpenIntents(
  file: string,
  opts: { runId?: string; fromSeq?: number } = {},
): Promise<WalEntry[]> {
  const tracker = new OpenIntents();
  for await (const { entry } of readWalEntries(file, { runId: opts.runId, fromSeq: opts.fromSeq })) {
    tracker.add(entry);
  }
  return tracker.list();
}

/** Pairs intents with commits as entries stream by. */
export class OpenIntents {
  private readonly open = new Map<string, WalEntry[]>();

  add(entry: WalEntry): void {
    const key = intentKey(entry);
    const list = this.open.get(key);
    if (!entry.committed) {
      if (list) list.push(entry);
      else this.open.set(key, [entry]);
    } else if (list) {
      list.shift(); // the oldest open intent of that key is the one committed
      if (list.length === 0) this.open.delete(key);
    }
  }

  /** The intents still open, in seq order. */
  list(): WalEntry[] {
    return [...this.open.values()].flat().sort((a, b) => a.seq - b.seq);
  }
}

export interface UncommittedEntry {
  run_id: string;
  seq: number;
  entry_hash: string;
  entry: WalEntry;
}

export interface IndexReport {
  /** True when the index was missing, corrupt or inconsistent with the WAL and was rewritten. */
  rebuilt: boolean;
  reason?: string;
  /** Rows checked against the WAL. */
  rows: number;
  /** Runs whose WAL was read (runs without rows are not read: that is what the index saves). */
  runs_read: string[];
}

interface IndexLoad {
  rows: UncommittedRow[];
  problem?: string;
}

async function loadIndex(ws: Workspace): Promise<IndexLoad> {
  const rows: UncommittedRow[] = [];
  try {
    for await (const line of readLinesForward(uncommittedIndexPath(ws))) {
      if (line.text === "") continue;
      let row: unknown;
      try {
        row = JSON.parse(line.text);
      } catch {
        return { rows, problem: `line ${line.lineNo} is not JSON${line.terminated ? "" : " (torn)"}` };
      }
      const r = row as UncommittedRow;
      if (
        typeof r !== "object" ||
        r === null ||
        typeof r.run_id !== "string" ||
        !Number.isInteger(r.seq) ||
        typeof r.entry_hash !== "string"
      ) {
        return { rows, problem: `line ${line.lineNo} is not an index row` };
      }
      rows.push({ run_id: r.run_id, seq: r.seq, entry_hash: r.entry_hash });
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { rows, problem: code === "ENOENT" ? "missing" : `unreadable: ${(err as Error).message}` };
  }
  return { rows };
}

/**
 * The rows of a run that a caller already knows (a restore sees every entry as it applies it),
 * in seq order; undefined: read them from the run's WAL.
 */
export type KnownUncommittedRows = (run: RunInfo) => AsyncIterable<UncommittedRow> | undefined;

/** The committed=false entries of a run's WAL as index rows; stops quietly at damage. */
async function* walRowsOf(run: RunInfo, errors: string[]): AsyncGenerator<UncommittedRow> {
  try {
    for await (const { entry } of readWalEntries(run.file, { runId: run.run_id })) {
      if (!entry.committed) yield { run_id: run.run_id, seq: entry.seq, entry_hash: entry.entry_hash };
    }
  } catch (err) {
    // Rows up to the damage are kept; `wal verify` names the break.
    errors.push(`${run.run_id}: ${(err as Error).message}`);
  }
}

/**
 * Rewrites the uncommitted index from the WALs (every committed=false entry of every run, in run
 * order), streaming into a temp file that atomically replaces the old index. Call it while no
 * writer of this workspace is open (a writer keeps the old index open for appending). `known`
 * gives the rows of runs whose entries the caller has already seen, so their WAL is not read again.
 */
export async function rebuildUncommittedIndex(
  ws: Workspace,
  known?: KnownUncommittedRows,
): Promise<{ rows: number; errors: string[] }> {
  const target = uncommittedIndexPath(ws);
  const tmp = tempPathFor(target);
  const fh = await open(tmp, "wx", FILE_MODE);
  let rows = 0;
  const errors: string[] = [];
  try {
    let pending = "";
    for (const run of await listRuns(ws)) {
      for await (const row of known?.(run) ?? walRowsOf(run, errors)) {
        pending += uncommittedRowLine(row);
        rows++;
        if (pending.length > 1 << 16) {
          await writeAllAt(fh, pending, null);
          pending = "";
        }
      }
    }
    await writeAllAt(fh, pending, null);
    await fsyncHandle(fh);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw wrapError("uncommitted index rebuild", err);
  }
  await fh.close();
  await durableRename(tmp, target);
  return { rows, errors };
}

/**
 * Intents of previous runs that no commit in their run closes: what replay must consider
 * (replay then skips those the idempotency store marks executed).
 *
 * The uncommitted index says which runs have intents and from which seq to read, so runs
 * without rows are never read. Every row is checked against its WAL (the entry at that seq must
 * be an intent with that hash); a missing, unparsable or inconsistent index is rebuilt from the
 * WALs. Closed runs (clean shutdown, or marked recovered) are skipped unless `includeClosed`.
 * Call before opening the new run's writer.
 */
export async function findUncommittedEntries(
  ws: Workspace,
  opts: { excludeRunId?: string; includeClosed?: boolean } = {},
): Promise<{ entries: UncommittedEntry[]; index: IndexReport }> {
  const runs = await listRuns(ws);
  const known = new Set(runs.map((r) => r.run_id));
  let load = await loadIndex(ws);
  const report: IndexReport = { rebuilt: false, rows: 0, runs_read: [] };
  const rebuild = async (reason: string) => {
    await rebuildUncommittedIndex(ws);
    report.rebuilt = true;
    report.reason = reason;
    load = await loadIndex(ws);
  };
  if (load.problem) await rebuild(`index ${load.problem}`);

  for (let attempt = 0; attempt < 2; attempt++) {
    const byRun = new Map<string, UncommittedRow[]>();
    for (const row of load.rows) {
      if (!known.has(row.run_id)) continue; // a run whose WAL is gone (pruned): nothing to replay
      const list = byRun.get(row.run_id);
      if (list) list.push(row);
      else byRun.set(row.run_id, [row]);
    }
    const entries: UncommittedEntry[] = [];
    let inconsistency: string | undefined;
    report.rows = 0;
    report.runs_read = [];
    for (const run of runs) {
      const rows = byRun.get(run.run_id);
      if (!rows || run.run_id === opts.excludeRunId) continue;
      if (!opts.includeClosed && (await isRunClosed(ws.walDir, run.run_id))) continue;
      report.rows += rows.length;
      report.runs_read.push(run.run_id);
      const fromSeq = rows.reduce((m, r) => Math.min(m, r.seq), Infinity);
      const wanted = new Map(rows.map((r) => [r.seq, r.entry_hash]));
      // One pass: check the rows (each names an intent at its seq with its hash; every intent
      // has a row) and pair intents with their commits.
      const tracker = new OpenIntents();
      let lastSeq = -1;
      try {
        for await (const { entry } of readWalEntries(run.file, { runId: run.run_id, fromSeq })) {
          lastSeq = entry.seq;
          const hash = wanted.get(entry.seq);
          if (hash !== undefined) {
            wanted.delete(entry.seq);
            if (hash !== entry.entry_hash || entry.committed) {
              inconsistency = `row ${run.run_id}#${entry.seq} does not match the WAL`;
            }
          } else if (!entry.committed) {
            inconsistency = `intent ${run.run_id}#${entry.seq} has no row`;
          }
          if (inconsistency) break;
          tracker.add(entry);
        }
      } catch (err) {
        throw wrapError(`uncommitted entries of ${run.run_id}`, err);
      }
      // Rows past the end of the WAL are intents that never became durable (so were never
      // acknowledged or acted on): dropped. A row inside the WAL that names nothing is damage.
      for (const seq of wanted.keys()) {
        if (seq <= lastSeq && !inconsistency) inconsistency = `row ${run.run_id}#${seq} names no entry`;
      }
      if (inconsistency) break;
      const open = tracker.list();
      if (inconsistency) break;
      for (const e of open)
        entries.push({ run_id: run.run_id, seq: e.seq, entry_hash: e.entry_hash, entry: e });
    }
    if (!inconsistency || attempt === 1) return { entries, index: report };
    await rebuild(inconsistency);
  }
  /* c8 ignore next */
  throw new Error("unreachable");
}

/** Decision types whose commit resolves a claim (the task left `claimed` one way or another). */
const CLAIM_RESOLVING = new Set(["task_completed", "task_failed", "task_interrupted", "task_retry"]);

/**
 * Claims of a run that never got an agent: a `task_claimed` intent (committed=false) with no
 * later `task_spawn_confirmed` for the same task in that run (nor a later commit that moved the
 * task on: completed, failed, interrupted, retried). Newest claim per task, in seq order.
 */
export async function findOrphanedClaims(ws: Workspace, runId: string): Promise<WalEntry[]> {
  const claims = new Map<string, WalEntry>();
  for await (const { entry } of readWalEntries(ws.walFile(runId), { runId })) {
    const taskId = entry.inputs.task_id;
    if (typeof taskId !== "string") continue;
    if (entry.decision_type === "task_claimed" && !entry.committed) {
      claims.set(taskId, entry);
    } else if (
      entry.decision_type === "task_spawn_confirmed" ||
      (entry.committed && CLAIM_RESOLVING.has(entry.decision_type))
    ) {
      claims.delete(taskId);
    }
  }
  return [...claims.values()].sort((a, b) => a.seq - b.seq);
}
