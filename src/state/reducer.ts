/**
 * The orchestrator's state as a pure function of WAL decisions (docs/ARCHITECTURE.md, invariant 2):
 * `state = fold(applyEntry, checkpoint.state, WAL entries after checkpoint.wal_position)`.
 *
 * Rules (see docs/recovery.md):
 *  - only commit entries (`committed: true`) of the decision vocabulary change tasks, sessions
 *    and cost; intents, informational types and unknown types change nothing but `wal_position`;
 *  - every entry advances `wal_position` to {run_id, seq, entry_hash} of that entry;
 *  - a commit that does not fit the current state (a task that does not exist, a transition from
 *    an unexpected state) is still applied where it is unambiguous and never throws: replay must
 *    reach the same state as the live run did, whatever order the live run wrote.
 *
 * `applyEntry` is pure: it returns a new state and never mutates its argument (unchanged task
 * records are shared). `StateBuilder` applies entries in place for bulk loading, with the same
 * code path, so both give identical results.
 */
import { PyFloat, type JsonValue } from "../json/canonical.js";
import { asJsonObject, asNumber, propertyOf, type JsonObject } from "../json/object.js";

/** Task states the reducer produces (the backlog folders add closed/deferred/manual). */
export type ReducedTaskState = "open" | "claimed" | "done" | "failed";

export interface TaskRecord {
  /** The TaskSpec from `task_created` inputs.task, as written. */
  spec: JsonObject;
  state: ReducedTaskState;
  /** Current attempt number (0 until the first claim). */
  attempt: number;
  /** Reason of the last failure or interruption, if any. */
  last_reason?: string;
  /** Failed attempts so far (task_failed commits), for the scheduler's max_retries. */
  failures?: number;
  /** The attempt of the newest committed `task_merged` (worktree tasks only). */
  merge_attempt?: number;
  /** Its merge commit; null when that merge was refused (a conflict: see task_failed). */
  merge_commit?: string | null;
}

export interface AgentSession {
  agent_id: string;
  task_id: string;
  attempt: number;
  /** A worktree attempt: its branch and the branch it merges into (from the spawn's inputs). */
  branch?: string;
  target_branch?: string;
}

export interface CostAccumulator {
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  by_model: Record<string, { cost_usd: number; input_tokens: number; output_tokens: number }>;
}

export interface WalPositionRef {
  run_id: string;
  seq: number;
  entry_hash: string;
}

export interface OrchestratorState {
  tasks: Record<string, TaskRecord>;
  agent_sessions: Record<string, AgentSession>;
  cost: CostAccumulator;
  /** The last WAL entry this state covers; null for the empty state. */
  wal_position: WalPositionRef | null;
}

/** What the reducer reads from a WAL entry (structurally a subset of src/wal/entry.ts WalEntry). */
export interface ReducibleEntry {
  seq: number;
  decision_type: string;
  inputs: JsonObject;
  output: JsonObject;
  committed: boolean;
  entry_hash: string;
}

/** Types that change state on commit. */
export const STATE_DECISIONS = [
  "task_created",
  "task_claimed",
  "task_spawn_confirmed",
  "task_completed",
  "task_failed",
  "task_retry",
  "task_interrupted",
  "task_merged",
] as const;

/**
 * The last entry of a run that ended cleanly (checkpointed, WAL closed). Followers replicate it,
 * so it tells them the leader stopped on purpose rather than died.
 */
export const ORCHESTRATOR_STOPPED = "orchestrator_stopped";

/** Types never replayed and never changing state. */
export const INFORMATIONAL_DECISIONS = new Set([
  "tick_start",
  "orchestrator_started",
  ORCHESTRATOR_STOPPED,
  "wal_replay_completed",
  "checkpoint_written",
  "backup_snapshot",
]);

export function isInformational(decisionType: string): boolean {
  return INFORMATIONAL_DECISIONS.has(decisionType);
}

export function emptyState(): OrchestratorState {
  return {
    tasks: {},
    agent_sessions: {},
    cost: { cost_usd: 0, input_tokens: 0, output_tokens: 0, by_model: {} },
    wal_position: null,
  };
}

/** The task id of a TaskSpec (`id`, or `task_id` for older specs). */
export function taskIdOfSpec(spec: JsonObject): string | undefined {
  const id = spec.id ?? spec.task_id;
  return typeof id === "string" && id !== "" ? id : undefined;
}

export function agentIdOf(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}

/** Pure: the state after `entry` of run `runId`. The argument is not modified. */
export function applyEntry(
  state: OrchestratorState,
  runId: string,
  entry: ReducibleEntry,
): OrchestratorState {
  const draft: OrchestratorState = {
    tasks: state.tasks,
    agent_sessions: state.agent_sessions,
    cost: state.cost,
    wal_position: state.wal_position,
  };
  applyInto(draft, runId, entry, copyOnWrite);
  return draft;
}

/** Applies entries in place, for loading many entries (same rules as applyEntry). */
export class StateBuilder {
  readonly state: OrchestratorState;
  /** Copies `initial` unless `adopt` (the caller hands over a value nobody else holds). */
  constructor(initial: OrchestratorState = emptyState(), opts: { adopt?: boolean } = {}) {
    this.state = opts.adopt ? initial : cloneState(initial);
  }
  apply(runId: string, entry: ReducibleEntry): void {
    applyInto(this.state, runId, entry, inPlace);
  }
}

/** A deep copy that keeps PyFloat and bigint values as they are (structuredClone would not). */
export function cloneState(s: OrchestratorState): OrchestratorState {
  return cloneJson(s as unknown as JsonValue) as unknown as OrchestratorState;
}

function cloneJson(v: JsonValue): JsonValue {
  if (v === null || typeof v !== "object" || v instanceof PyFloat) return v;
  if (Array.isArray(v)) return v.map(cloneJson);
  const out: JsonObject = {};
  for (const k of Object.keys(v)) out[k] = cloneJson(v[k]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The one reducer. `mut` decides whether maps are copied before a change (pure) or changed in place.

interface Mutation {
  tasks(s: OrchestratorState): Record<string, TaskRecord>;
  sessions(s: OrchestratorState): Record<string, AgentSession>;
  cost(s: OrchestratorState): CostAccumulator;
}

const copyOnWrite: Mutation = {
  tasks: (s) => (s.tasks = { ...s.tasks }),
  sessions: (s) => (s.agent_sessions = { ...s.agent_sessions }),
  cost: (s) =>
    (s.cost = {
      ...s.cost,
      by_model: Object.fromEntries(Object.entries(s.cost.by_model).map(([k, v]) => [k, { ...v }])),
    }),
};

const inPlace: Mutation = {
  tasks: (s) => s.tasks,
  sessions: (s) => s.agent_sessions,
  cost: (s) => s.cost,
};

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function int(v: JsonValue | undefined): number | undefined {
  const n = asNumber(v);
  return n !== undefined && Number.isFinite(n) ? n : undefined;
}

function applyInto(s: OrchestratorState, runId: string, e: ReducibleEntry, mut: Mutation): void {
  s.wal_position = { run_id: runId, seq: e.seq, entry_hash: e.entry_hash };
  if (!e.committed) return;
  const inputs = e.inputs ?? {};
  const output = e.output ?? {};
  switch (e.decision_type) {
    case "task_created": {
      const spec = asJsonObject(inputs.task);
      const id = spec && taskIdOfSpec(spec);
      if (!spec || !id) return;
      // Creating an existing task again is a no-op (replayed intent whose commit we already have).
      if (propertyOf(s.tasks, id)) return;
      mut.tasks(s)[id] = { spec, state: "open", attempt: 0 };
      return;
    }
    case "task_claimed": {
      const id = str(inputs.task_id);
      const t = id ? propertyOf(s.tasks, id) : undefined;
      if (!id || !t) return;
      mut.tasks(s)[id] = { ...t, state: "claimed", attempt: int(inputs.attempt) ?? t.attempt };
      return;
    }
    case "task_spawn_confirmed": {
      const id = str(inputs.task_id);
      if (!id) return;
      const attempt = int(inputs.attempt) ?? propertyOf(s.tasks, id)?.attempt ?? 0;
      const agentId = str(inputs.agent_id) ?? agentIdOf(id, attempt);
      const session: AgentSession = { agent_id: agentId, task_id: id, attempt };
      const branch = str(inputs.branch);
      const target = str(inputs.target_branch);
      if (branch !== undefined && target !== undefined)
        Object.assign(session, { branch, target_branch: target });
      mut.sessions(s)[agentId] = session;
      return;
    }
    case "task_merged": {
      const id = str(inputs.task_id);
      const t = id ? propertyOf(s.tasks, id) : undefined;
      if (!id || !t) return;
      const commit = str(output.merge_commit) ?? null;
      mut.tasks(s)[id] = { ...t, merge_attempt: int(inputs.attempt) ?? t.attempt, merge_commit: commit };
      return;
    }
    case "task_completed": {
      const id = str(inputs.task_id);
      if (!id) return;
      const t = propertyOf(s.tasks, id);
      const attempt = int(inputs.attempt) ?? t?.attempt ?? 0;
      removeSession(s, mut, id, attempt);
      addCost(s, mut, output);
      if (t) mut.tasks(s)[id] = { ...t, state: "done", attempt };
      return;
    }
    case "task_failed": {
      const id = str(inputs.task_id);
      if (!id) return;
      const t = propertyOf(s.tasks, id);
      const attempt = int(inputs.attempt) ?? t?.attempt ?? 0;
      removeSession(s, mut, id, attempt);
      addCost(s, mut, output);
      if (t) {
        const reason = str(output.reason);
        const next: TaskRecord = { ...t, attempt, failures: (t.failures ?? 0) + 1 };
        if (output.terminal === true) next.state = "failed";
        if (reason !== undefined) next.last_reason = reason;
        mut.tasks(s)[id] = next;
      }
      return;
    }
    case "task_retry": {
      const id = str(inputs.task_id);
      const t = id ? propertyOf(s.tasks, id) : undefined;
      if (!id || !t) return;
      mut.tasks(s)[id] = { ...t, state: "open", attempt: int(inputs.attempt) ?? t.attempt };
      return;
    }
    case "task_interrupted": {
      const id = str(inputs.task_id);
      if (!id) return;
      const t = propertyOf(s.tasks, id);
      const attempt = int(inputs.attempt) ?? t?.attempt ?? 0;
      removeSession(s, mut, id, attempt);
      if (t) {
        const reason = str(output.reason);
        const next: TaskRecord = { ...t, state: "open" };
        if (reason !== undefined) next.last_reason = reason;
        mut.tasks(s)[id] = next;
      }
      return;
    }
    default:
      // informational or unknown: no state change
      return;
  }
}

function removeSession(s: OrchestratorState, mut: Mutation, taskId: string, attempt: number): void {
  const agentId = agentIdOf(taskId, attempt);
  if (propertyOf(s.agent_sessions, agentId)) delete mut.sessions(s)[agentId];
}

function addCost(s: OrchestratorState, mut: Mutation, output: JsonObject): void {
  const cost = asNumber(output.cost_usd) ?? 0;
  const input = asNumber(output.input_tokens) ?? 0;
  const out = asNumber(output.output_tokens) ?? 0;
  if (cost === 0 && input === 0 && out === 0) return;
  const c = mut.cost(s);
  c.cost_usd += cost;
  c.input_tokens += input;
  c.output_tokens += out;
  const model = str(output.model) ?? "unknown";
  const m = (c.by_model[model] ??= { cost_usd: 0, input_tokens: 0, output_tokens: 0 });
  m.cost_usd += cost;
  m.input_tokens += input;
  m.output_tokens += out;
}

/** Counts for checkpoint metadata and status. */
export function stateCounts(s: OrchestratorState): {
  task_count: number;
  completed_count: number;
  failed_count: number;
  open_count: number;
  claimed_count: number;
} {
  let completed = 0;
  let failed = 0;
  let open = 0;
  let claimed = 0;
  const ids = Object.keys(s.tasks);
  for (const id of ids) {
    const st = s.tasks[id].state;
    if (st === "done") completed++;
    else if (st === "failed") failed++;
    else if (st === "open") open++;
    else claimed++;
  }
  return {
    task_count: ids.length,
    completed_count: completed,
    failed_count: failed,
    open_count: open,
    claimed_count: claimed,
  };
}
