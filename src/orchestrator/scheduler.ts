/**
 * Which open tasks may run now: dependencies done, not held back by a retry's backoff; by priority,
 * then id. And which never can (a dependency failed, unknown, in a cycle, or itself blocked).
 */
import { findCycles } from "./tasks.js";
import type { RetryBackoff } from "./retry-backoff.js";
import type { BlockedTask } from "./run-outcome.js";
import type { OrchestratorState } from "../state/reducer.js";
import type { TaskFiles } from "./task-files.js";
import { allTasks, taskView, type TaskView } from "./view.js";

export interface Schedule {
  ready: TaskView[];
  /** Open tasks that will be ready later (dependencies running, backoff). */
  waiting: number;
  blocked: BlockedTask[];
}

export function schedulable(
  state: OrchestratorState,
  files: TaskFiles,
  backoff: RetryBackoff,
  maxAgents: number,
): Schedule {
  const ready: TaskView[] = [];
  const blocked: BlockedTask[] = [];
  const backingOff: TaskView[] = [];
  // Open tasks waiting on a dependency not done yet: only among them can a cycle wait forever.
  const waitingOnDeps = new Map<string, readonly string[]>();
  const now = Date.now();
  for (const t of allTasks(state)) {
    if (t.state !== "open") continue;
    const d = depsDone(state, files, t);
    if (d.blockedBy) blocked.push({ id: t.id, why: d.blockedBy });
    else if (!d.ready) waitingOnDeps.set(t.id, t.spec.depends_on);
    else if (backoff.isHeld(t.id, now)) {
      backingOff.push(t);
    } else ready.push(t);
  }
  let waiting = waitingOnDeps.size + backingOff.length - blockCycles(waitingOnDeps, blocked);
  waiting -= blockTransitively(state, blocked);
  ready.sort(byPriority);
  // With one agent the order is strict: a retried task in backoff is waited for, never overtaken,
  // so which task runs next does not depend on how long the backoff took (fingerprint determinism).
  if (maxAgents === 1 && backingOff.length && ready.length) {
    const firstWaiting = [...backingOff].sort(byPriority)[0];
    if (byPriority(firstWaiting, ready[0]) < 0)
      return { ready: [], waiting: waiting + ready.length, blocked };
  }
  return { ready, waiting, blocked };
}

function byPriority(a: TaskView, b: TaskView): number {
  return a.spec.priority - b.spec.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function depsDone(
  state: OrchestratorState,
  files: TaskFiles,
  t: TaskView,
): { ready: boolean; blockedBy?: string } {
  for (const dep of t.spec.depends_on) {
    const d = taskView(state, dep);
    if (d) {
      if (d.state === "done" || d.state === "closed") continue;
      if (d.state === "failed") return { ready: false, blockedBy: `dependency ${dep} failed` };
      return { ready: false };
    }
    // A task the WAL does not know (e.g. history from the Python original): its folder decides.
    const folder = files.folderOf(dep);
    if (folder === "done" || folder === "closed") continue;
    return { ready: false, blockedBy: `dependency ${dep} is unknown` };
  }
  return { ready: true };
}

/**
 * Tasks whose dependencies wait on each other (hand-written files: `task add` refuses a cycle) never
 * become ready: each is added to `blocked`, naming its cycle. Returns how many were added.
 */
function blockCycles(waitingOnDeps: Map<string, readonly string[]>, blocked: BlockedTask[]): number {
  let added = 0;
  for (const cycle of findCycles(waitingOnDeps)) {
    const why = `dependency cycle ${cycle.join(" -> ")}`;
    for (const id of new Set(cycle)) {
      blocked.push({ id, why });
      added++;
    }
  }
  return added;
}

/**
 * A task waiting on a blocked one is blocked too (transitively): added to `blocked`. Returns how
 * many were added (they were counted as waiting).
 */
function blockTransitively(state: OrchestratorState, blocked: BlockedTask[]): number {
  let added = 0;
  let changed = true;
  const blockedIds = new Set(blocked.map((b) => b.id));
  while (changed) {
    changed = false;
    for (const t of allTasks(state)) {
      if (t.state !== "open" || blockedIds.has(t.id)) continue;
      const dep = t.spec.depends_on.find((d) => blockedIds.has(d));
      if (dep) {
        blockedIds.add(t.id);
        blocked.push({ id: t.id, why: `dependency ${dep} is blocked` });
        added++;
        changed = true;
      }
    }
  }
  return added;
}
