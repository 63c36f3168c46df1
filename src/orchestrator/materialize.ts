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
import type { JsonValue } from "../json/canonical.js";
import { asNumber } from "../json/object.js";
import {
  CostRowsOncePerAgent,
  ledgerLines,
  ledgerTotals,
  usageOf,
  type LedgerTotals,
} from "../ledger/cost-ledger.js";
import { entryTimeMs, type WalEntry } from "../wal/entry.js";
import { readClosedMarker } from "../wal/recovery.js";
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
import { allTasks, type TaskView } from "./view.js";
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
  /** The ledger sums to less than the state's cost or tokens: `start` looks for missing rows (false when not looked at). */
  ledger_short: boolean;
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
  if (opts.ledger === false) return { missing, misplaced, ledger_short: false };
  return { missing, misplaced, ledger_short: ledgerShort(state, await ledgerTotals(ws)) };
}

/**
 * Whether the ledger's sums fall short of the state's (cost, or tokens: a usage may cost nothing):
 * the cheap sign of a missing row, which spares streaming the whole WAL on every start.
 */
export function ledgerShort(state: OrchestratorState, totals: LedgerTotals): boolean {
  const below = (have: number, want: number) => want - have > 1e-9 * Math.max(1, want);
  return (
    below(totals.cost_usd, state.cost.cost_usd) ||
    below(totals.input_tokens, state.cost.input_tokens) ||
    below(totals.output_tokens, state.cost.output_tokens)
  );
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
  if (opts.ledger !== false && drift.ledger_short) res.ledger_rows = await appendMissingCostRows(ws);
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

/** A task_completed/task_failed entry (intent or commit) of the WAL, with the agent it is of. */
interface OutcomeEntry {
  run_id: string;
  entry: WalEntry;
  task_id: string;
  agent_id: string;
}

/** Every task_completed/task_failed entry, run by run in run order (streamed). */
async function* outcomeEntries(ws: Workspace): AsyncGenerator<OutcomeEntry> {
  for (const run of await listRuns(ws)) {
    for await (const { entry } of readWalEntries(run.file, {
      runId: run.run_id,
      decisionTypes: ["task_completed", "task_failed"],
    })) {
      const taskId = entry.inputs.task_id;
      const attempt = asNumber(entry.inputs.attempt);
      if (typeof taskId !== "string" || attempt === undefined) continue;
      yield { run_id: run.run_id, entry, task_id: taskId, agent_id: agentIdOf(taskId, attempt) };
    }
  }
}

/**
 * One ledger row per usage commit whose agent has none, as the orchestrator wrote it: the run the
 * commit is in, the commit's time. Streams every run (only called when the ledger is short).
 */
async function appendMissingCostRows(ws: Workspace): Promise<number> {
  const rows = new CostRowsOncePerAgent(ws);
  let added = 0;
  for await (const o of outcomeEntries(ws)) {
    if (!o.entry.committed) continue;
    const row = {
      timestamp: new Date(entryTimeMs(o.entry.timestamp)).toISOString(),
      run_id: o.run_id,
      task_id: o.task_id,
      agent_id: o.agent_id,
    };
    if (await rows.append(row, o.entry.output)) added++;
  }
  return added;
}

/** Where a usage is recorded in the WAL. */
export interface WalUsage {
  task_id: string;
  agent_id: string;
  run_id: string;
  seq: number;
  usage: NonNullable<ReturnType<typeof usageOf>>;
}

/** A ledger line that disagrees with the WAL, and why. */
export interface LedgerMismatch {
  line: number;
  /**
   * `uncommitted`: the row of a completion whose intent the next `start` replays (the commit a crash
   * cut off follows); `stale`: the same, but the intent is older than the replay staleness window,
   * so `start` reports it instead of finishing it.
   */
  kind: "altered" | "duplicate" | "uncommitted" | "stale" | "unknown" | "unreadable";
  /** The line's task and agent, when it names them. */
  task_id?: string;
  agent_id?: string;
  message: string;
}

export interface LedgerDrift {
  /** Lines with an agent id (as `start` counts a usage's row), and the sum of their costs. */
  rows: number;
  cost_usd: number;
  /** The first lines that disagree with the WAL, in line order (at most `LEDGER_MISMATCHES_KEPT`). */
  mismatches: LedgerMismatch[];
  /** How many lines disagree, all told. */
  mismatch_count: number;
  mismatch_kinds: Set<LedgerMismatch["kind"]>;
  /** Usage commits whose agent has no row (the first `LEDGER_MISMATCHES_KEPT`), and how many. */
  missing: WalUsage[];
  missing_count: number;
}

const LEDGER_MISMATCHES_KEPT = 20;

const FIELDS = ["task_id", "model", "input_tokens", "output_tokens", "cost_usd"] as const;

/**
 * Each ledger row against the usage the WAL recorded for its agent (the WAL is the hash-chained
 * record the state's cost comes from; the ledger is its copy). Read-only; streams the ledger and
 * the WAL, holding one small record per usage. `staleAfterMs` is the replay's staleness window
 * (replayWal), with `now`: an intent older than that is one `start` does not replay.
 */
export async function ledgerDrift(
  ws: Workspace,
  opts: { staleAfterMs: number; now?: () => number },
): Promise<LedgerDrift> {
  const committed = new Map<string, WalUsage>();
  // Intents of runs left open: `start` replays them (their commit follows a row already written).
  const pending = new Map<string, WalUsage & { timestamp: number }>();
  const open = new Map<string, boolean>();
  for await (const o of outcomeEntries(ws)) {
    const usage = usageOf(o.entry.output);
    if (!usage) continue;
    const u = { task_id: o.task_id, agent_id: o.agent_id, run_id: o.run_id, seq: o.entry.seq, usage };
    if (o.entry.committed) {
      if (!committed.has(o.agent_id)) committed.set(o.agent_id, u);
      continue;
    }
    if (!open.has(o.run_id)) open.set(o.run_id, !(await readClosedMarker(ws, o.run_id)));
    if (open.get(o.run_id)) pending.set(o.agent_id, { ...u, timestamp: o.entry.timestamp });
  }
  const drift: LedgerDrift = {
    rows: 0,
    cost_usd: 0,
    mismatches: [],
    mismatch_count: 0,
    mismatch_kinds: new Set(),
    missing: [],
    missing_count: 0,
  };
  const mismatch = (m: LedgerMismatch) => {
    drift.mismatch_count++;
    drift.mismatch_kinds.add(m.kind);
    if (drift.mismatches.length < LEDGER_MISMATCHES_KEPT) drift.mismatches.push(m);
  };
  const firstLineOf = new Map<string, number>();
  for await (const { line, row, terminated } of ledgerLines(ws)) {
    const agent = row?.agent_id;
    if (!row || typeof agent !== "string") {
      mismatch({
        line,
        kind: "unreadable",
        message: `line ${line}: ${terminated ? "not a cost row" : "torn last line (an interrupted append)"}, not counted`,
      });
      continue;
    }
    drift.rows++;
    drift.cost_usd += asNumber(row.cost_usd) ?? 0;
    const task = typeof row.task_id === "string" ? row.task_id : undefined;
    const at = `line ${line} (${task !== undefined ? `task ${task}, ` : ""}agent ${agent})`;
    const ids = { line, task_id: task, agent_id: agent };
    const first = firstLineOf.get(agent);
    if (first !== undefined) {
      mismatch({
        ...ids,
        kind: "duplicate",
        message: `${at}: a second row of that usage (the first is line ${first})`,
      });
      continue;
    }
    firstLineOf.set(agent, line);
    const u = committed.get(agent);
    if (!u) {
      const p = pending.get(agent);
      if (!p) {
        mismatch({ ...ids, kind: "unknown", message: `${at}: no usage of agent ${agent} in the WAL` });
        continue;
      }
      const intent = `${at}: its completion is an intent without a commit (run ${p.run_id} seq ${p.seq}): a crash between the row and the commit`;
      // The age as replayWal measures it, so this verdict and the next start's agree.
      const ageMs = (opts.now ?? Date.now)() - p.timestamp * 1000;
      mismatch(
        ageMs > opts.staleAfterMs
          ? {
              ...ids,
              kind: "stale",
              message: `${intent}, and the intent (${Math.round(ageMs / 1000)} s old) is older than the replay staleness window (${Math.round(opts.staleAfterMs / 1000)} s)`,
            }
          : { ...ids, kind: "uncommitted", message: intent },
      );
      continue;
    }
    const want = { task_id: u.task_id, ...u.usage };
    const differs = FIELDS.filter(
      (f) => (typeof want[f] === "number" ? asNumber(row[f]) : row[f]) !== want[f],
    ).map(
      (f) =>
        `${f} is ${row[f] === undefined ? "missing" : shownValue(row[f])}, the WAL recorded ${shownValue(want[f])}`,
    );
    if (differs.length)
      mismatch({
        ...ids,
        kind: "altered",
        message: `${at}: ${differs.join(", ")} (run ${u.run_id} seq ${u.seq})`,
      });
  }
  for (const u of committed.values()) {
    if (firstLineOf.has(u.agent_id)) continue;
    drift.missing_count++;
    if (drift.missing.length < LEDGER_MISMATCHES_KEPT) drift.missing.push(u);
  }
  return drift;
}

/** A row's value as its line holds it (numbers without a float's tail, strings quoted). */
function shownValue(v: JsonValue | undefined): string {
  const n = asNumber(v);
  return n !== undefined ? String(n) : (JSON.stringify(v) ?? String(v));
}
