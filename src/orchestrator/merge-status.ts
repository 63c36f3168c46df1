/**
 * What `status` says about worktree tasks: attempts whose agent succeeded and whose merge has not
 * been decided yet (with why it waits, asked of the repository as the orchestrator asks it), and
 * the merged tasks with their merge commits (the state: `task_merged` commits).
 */
import type { OrchestratorState } from "../state/reducer.js";
import type { Workspace } from "../workspace/layout.js";
import { mergeBlocker, type MergeInputs } from "./git/merge-decision.js";
import { isRepo } from "./git/repo.js";
import { sessions } from "./view.js";
import { readCompletion } from "./wrapper.js";

export interface MergeStatus {
  waiting: { task_id: string; attempt: number; branch: string; target_branch: string; why: string }[];
  merged: { task_id: string; attempt: number; merge_commit: string }[];
}

export async function collectMergeStatus(ws: Workspace, state: OrchestratorState): Promise<MergeStatus> {
  const merged = Object.entries(state.tasks)
    .filter(([, t]) => typeof t.merge_commit === "string")
    .map(([id, t]) => ({ task_id: id, attempt: t.merge_attempt!, merge_commit: t.merge_commit! }))
    .sort((a, b) => (a.task_id < b.task_id ? -1 : a.task_id > b.task_id ? 1 : 0));
  const waiting: MergeStatus["waiting"] = [];
  // Asked of git only for an attempt that waits to merge: most workspaces have none, and a status
  // would otherwise start a git process for nothing.
  let repoOk: boolean | undefined;
  for (const s of sessions(state)) {
    if (!s.branch || !s.target_branch) continue;
    const rec = await readCompletion(ws, s.agent_id);
    if (!rec || rec.error !== null || rec.exit_code !== 0 || rec.timed_out) continue;
    if (state.tasks[s.task_id]?.merge_attempt === s.attempt) continue; // decided; completion next
    // head_commit is not known before the merge: only a MERGE_HEAD of ours would match it.
    const inputs = { head_commit: "", target_branch: s.target_branch } as MergeInputs;
    repoOk ??= await isRepo(ws.projectDir);
    const blocker = repoOk
      ? await mergeBlocker(ws.projectDir, inputs)
      : `${ws.projectDir} is not a git repository`;
    waiting.push({
      task_id: s.task_id,
      attempt: s.attempt,
      branch: s.branch,
      target_branch: s.target_branch,
      why: blocker ?? "next in line (the orchestrator merges it in its next pass)",
    });
  }
  return { waiting, merged };
}

export function renderMergeStatus(m: MergeStatus, line: (l: string) => void): void {
  for (const w of m.waiting)
    line(
      `waiting to merge: task ${w.task_id} (attempt ${w.attempt}, ${w.branch} into ${w.target_branch}): ${w.why}`,
    );
  if (m.merged.length)
    line(
      `merged: ${m.merged.length} task(s)` +
        `: ${m.merged
          .slice(-5)
          .map((x) => `${x.task_id} ${x.merge_commit.slice(0, 12)}`)
          .join(", ")}` +
        (m.merged.length > 5 ? ", ..." : ""),
    );
}
