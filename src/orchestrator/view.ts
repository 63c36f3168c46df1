/**
 * Read-only accessors over the reducer's state (src/state/reducer.ts), so the
 * scheduler, status and doctor do not depend on its field names.
 */
import type { OrchestratorState } from "../state/reducer.js";
import type { TaskSpec } from "./task-spec.js";

export type TaskPhase = "open" | "claimed" | "done" | "failed" | "closed";

export interface TaskView {
  id: string;
  spec: TaskSpec;
  state: TaskPhase;
  /** Newest attempt claimed (0: never claimed). */
  attempt: number;
  /** Failed attempts so far (for max_retries). */
  failures: number;
}

export interface SessionView {
  agent_id: string;
  task_id: string;
  attempt: number;
  /** A worktree attempt: its branch and the branch it merges into. */
  branch?: string;
  target_branch?: string;
}

export function taskView(st: OrchestratorState, id: string): TaskView | undefined {
  const t = st.tasks[id];
  if (!t) return undefined;
  return {
    id,
    spec: t.spec as unknown as TaskSpec,
    state: t.state as TaskPhase,
    attempt: t.attempt,
    failures: t.failures ?? 0,
  };
}

export function allTasks(st: OrchestratorState): TaskView[] {
  return Object.keys(st.tasks)
    .sort()
    .map((id) => taskView(st, id)!);
}

export function sessions(st: OrchestratorState): SessionView[] {
  return Object.entries(st.agent_sessions)
    .map(([agent_id, s]) => ({
      agent_id,
      task_id: s.task_id,
      attempt: s.attempt,
      ...(s.branch && s.target_branch ? { branch: s.branch, target_branch: s.target_branch } : {}),
    }))
    .sort((a, b) => (a.agent_id < b.agent_id ? -1 : a.agent_id > b.agent_id ? 1 : 0));
}

export function sessionOfTask(st: OrchestratorState, taskId: string): SessionView | undefined {
  return sessions(st).find((s) => s.task_id === taskId);
}

export function totalCost(st: OrchestratorState): number {
  return st.cost.cost_usd;
}

export function countByState(st: OrchestratorState): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of Object.values(st.tasks)) counts[t.state] = (counts[t.state] ?? 0) + 1;
  return counts;
}
