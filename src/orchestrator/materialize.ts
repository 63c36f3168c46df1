/**
 * The files a committed decision leaves outside the WAL, rebuilt from the WAL alone.
 *
 * A decision's durable effects beyond its WAL entries are: the task file that `task_created`
 * adopted (its whole TaskSpec, body included, is in the entry's `inputs.task`), the folder the file
 * sits in (the task's state), and one cost-ledger row per usage (the `task_completed`/`task_failed`
 * commit carries cost, tokens and model). Replication ships WAL entries continuously but these files
 * only with base snapshots, so a promoted follower holds every acknowledged decision but not always
 * its files. `dr promote` and `start` bring them in line (`materializeFromWal`); `doctor` reports
 * where they disagree (`walDrift`). The WAL wins: a file is written or moved, never the WAL changed.
 *
 * Written task files are `backlog/<state>/<id>.md` as `task add` renders them; unknown front-matter
 * keys of a foreign original (not part of the TaskSpec) are not recovered. A file in `closed/` is an
 * operator's archive and is left where it is.
 */
import path from "node:path";
import type { JsonObject } from "../json/object.js";
import { asNumber } from "../json/object.js";
import { CostRowsOncePerAgent, ledgerTotals } from "../ledger/cost-ledger.js";
import { entryTimeMs } from "../wal/entry.js";
import { listRuns, readWalEntries } from "../wal/reader.js";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import type { TaskState, Workspace } from "../workspace/layout.js";
import { agentIdOf, type OrchestratorState } from "../state/reducer.js";
import {
  DEFAULT_PRIORITY,
  DEFAULT_TIMEOUT_S,
  moveTaskFile,
  renderTask,
  scanBacklog,
  type BacklogScan,
} from "./tasks.js";
import { type TaskSpec } from "./task-spec.js";
import { allTasks, totalCost, type TaskView } from "./view.js";
import { taskIdOfFileName } from "./backlog-folders.js";

export interface MisplacedTask {
  id: string;
  file: string;
  folder: TaskState;
  state: TaskState;
}

export interface WalDrift {
  /** Tasks the WAL created (committed `task_created`) whose file is in no backlog folder. */
  missing: TaskView[];
  /** Task files in another folder than the state the WAL gives them (`closed/` excepted). */
  misplaced: MisplacedTask[];
  /** What the ledger lacks against the state's cost (0 when it is not short, or not looked at). */
  ledger_short_usd: number;
}

/** Where the backlog disagrees with the state (checkpoint + WAL). Read-only. */
export async function walDrift(
  ws: Workspace,
  state: OrchestratorState,
  scan?: BacklogScan,
  opts: { ledger?: boolean } = {},
): Promise<WalDrift> {
  const s = scan ?? (await scanBacklog(ws));
  const filesOf = new Map<string, BacklogScan["tasks"]>();
  for (const t of s.tasks) filesOf.set(t.spec.id, [...(filesOf.get(t.spec.id) ?? []), t]);
  // A damaged file named after its task is still there (the backlog check names what is wrong in
  // it): not missing, and never written over.
  const damaged = new Set(s.malformed.map((m) => taskIdOfFileName(path.basename(m.file))));
  const missing: TaskView[] = [];
  const misplaced: MisplacedTask[] = [];
  for (const t of allTasks(state)) {
    const files = filesOf.get(t.id);
    if (!files) {
      if (!damaged.has(t.id)) missing.push(t);
      continue;
    }
    // With duplicates (the backlog_unique check's to report), the copy in the right folder counts.
    if (files.some((f) => f.state === t.state || f.state === "closed")) continue;
    misplaced.push({ id: t.id, file: files[0].file, folder: files[0].state, state: t.state });
  }
  if (opts.ledger === false) return { missing, misplaced, ledger_short_usd: 0 };
  const totals = await ledgerTotals(ws);
  const short = totalCost(state) - totals.cost_usd;
  return { missing, misplaced, ledger_short_usd: short > 1e-9 * Math.max(1, totalCost(state)) ? short : 0 };
}

export interface MaterializeResult {
  /** Task files written from their `task_created` spec. */
  written: Array<{ id: string; file: string }>;
  /** Task files moved into the folder of their state. */
  moved: Array<{ id: string; from: string; to: string }>;
  /** Ledger rows written from usage commits. */
  ledger_rows: number;
  /** What could not be done (e.g. a file of that name holds another task), one line each. */
  problems: string[];
}

export interface MaterializeOptions {
  /** Move misplaced files into their state's folder (default true; `start` leaves that to its own pass after replay). */
  moveMisplaced?: boolean;
  /** Append the ledger rows the state's cost needs (default true). */
  ledger?: boolean;
}

/**
 * Brings the backlog and the ledger in line with `state` (checkpoint + WAL): writes the missing
 * task files, moves misplaced ones, appends the missing ledger rows. Idempotent; the caller holds
 * the workspace lock. Every write is durable (atomic replace, durable rename, durable append).
 */
export async function materializeFromWal(
  ws: Workspace,
  state: OrchestratorState,
  opts: MaterializeOptions = {},
): Promise<MaterializeResult> {
  const res: MaterializeResult = { written: [], moved: [], ledger_rows: 0, problems: [] };
  const scan = await scanBacklog(ws);
  const drift = await walDrift(ws, state, scan, { ledger: opts.ledger });
  const taken = new Set([...scan.tasks.map((t) => t.file), ...scan.malformed.map((m) => m.file)]);
  for (const t of drift.missing) {
    const folder = ws.backlogDir(t.state);
    const file = path.join(folder, `${t.id}.md`);
    if (taken.has(file)) {
      res.problems.push(`task ${t.id}: ${file} exists and holds another task; its file was not written`);
      continue;
    }
    await durableMkdir(folder);
    await atomicWriteFile(file, renderTask(specOf(t)));
    res.written.push({ id: t.id, file });
  }
  if (opts.moveMisplaced !== false) {
    for (const m of drift.misplaced) {
      const to = await moveTaskFile(ws, m.file, m.state);
      res.moved.push({ id: m.id, from: m.file, to });
    }
  }
  if (opts.ledger !== false && drift.ledger_short_usd > 0) res.ledger_rows = await appendMissingCostRows(ws);
  return res;
}

/** The TaskSpec of a task as the state holds it (numbers may be lossless-parser values). */
function specOf(t: TaskView): TaskSpec {
  const raw = t.spec as unknown as JsonObject;
  const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
  return {
    id: t.id,
    title: str(raw.title) ?? t.id,
    role: str(raw.role) ?? "backend",
    priority: asNumber(raw.priority) ?? DEFAULT_PRIORITY,
    depends_on: Array.isArray(raw.depends_on) ? raw.depends_on.filter((d) => typeof d === "string") : [],
    command: str(raw.command),
    prompt: str(raw.prompt),
    agent: str(raw.agent),
    max_retries: asNumber(raw.max_retries) ?? 0,
    timeout_s: asNumber(raw.timeout_s) ?? DEFAULT_TIMEOUT_S,
    body: str(raw.body) ?? "",
  };
}

/**
 * One ledger row per usage commit whose agent has none, as the orchestrator wrote it: the run the
 * commit is in, the commit's time. Streams every run (only called when the ledger is short).
 */
async function appendMissingCostRows(ws: Workspace): Promise<number> {
  const rows = new CostRowsOncePerAgent(ws);
  let added = 0;
  for (const run of await listRuns(ws)) {
    for await (const { entry } of readWalEntries(run.file, { runId: run.run_id })) {
      if (
        !entry.committed ||
        (entry.decision_type !== "task_completed" && entry.decision_type !== "task_failed")
      )
        continue;
      const taskId = entry.inputs.task_id;
      const attempt = asNumber(entry.inputs.attempt);
      if (typeof taskId !== "string" || attempt === undefined) continue;
      const row = {
        timestamp: new Date(entryTimeMs(entry.timestamp)).toISOString(),
        run_id: run.run_id,
        task_id: taskId,
        agent_id: agentIdOf(taskId, attempt),
      };
      if (await rows.append(row, entry.output)) added++;
    }
  }
  return added;
}
