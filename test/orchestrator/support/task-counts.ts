/**
 * The task counts `bernstein status` reports (the task files of each backlog folder, by name, the
 * folders as of one moment; a status also leaves out files that do not parse), read in the test's
 * own process: cheap enough to poll while an orchestrator works, where a `status` child per poll
 * (over half a second of CPU each) would take the cores the orchestrator needs. Tests check the
 * CLI's own `status` once the wait is over.
 */
import { listBacklog } from "../../../src/orchestrator/backlog-folders.js";
import { TASK_STATES, type TaskState, type Workspace } from "../../../src/workspace/layout.js";

export async function taskCounts(ws: Workspace): Promise<Record<TaskState, number>> {
  const counts = {} as Record<TaskState, number>;
  for (const { state, names } of await listBacklog(ws, TASK_STATES)) counts[state] = names.length;
  return counts;
}
