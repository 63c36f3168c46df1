/**
 * The `task_merged` decision, crash-safe: intent `{task_id, attempt, branch, head_commit,
 * target_branch}` → merge in the main worktree → commit `{merge_commit}` → worktree and branch
 * removed. The action is idempotent, so the same function finishes a replayed intent:
 *  - the target already contains head_commit (ancestry): the merge happened before the crash;
 *    the commit entry is written with the merge commit found in the history, no second merge;
 *  - MERGE_HEAD is head_commit (killed inside the merge): aborted, then merged again;
 *  - otherwise: merged now.
 * A merge that waits (dirty main worktree, a git lock held) writes no intent at all.
 */
import type { JsonObject } from "../../wal/entry.js";
import { crashPoint, type DecisionLog } from "../../state/decisions.js";
import {
  abortOurHalfDoneMerge,
  findMergeCommit,
  mergeHead,
  type MergeResult,
  type MergeStrategy,
} from "./merge.js";
import { checkedOutBranch, containsCommit, dirtyPaths, halfDoneMerge } from "./repo.js";
import { runGit, type GitIdentity } from "./run-git.js";
import { deleteBranch, removeTaskWorktree } from "./worktree.js";

export interface MergeInputs {
  task_id: string;
  attempt: number;
  branch: string;
  head_commit: string;
  target_branch: string;
}

export interface MergeSettings {
  /** The repository's main worktree (the target branch is checked out there). */
  repo: string;
  worktreePath: string;
  title: string;
  strategy: MergeStrategy;
  identity: GitIdentity;
  /** Fixed commit date (deterministic runs). */
  date?: string;
  /** Keep the task branch after a successful merge. */
  keepBranch?: boolean;
}

export type MergeOutcome =
  | { state: "merged"; merge_commit: string; already: boolean }
  | { state: "conflict"; reason: string; paths: string[] }
  | { state: "waiting"; why: string };

export function mergeMessage(inputs: MergeInputs, title: string): string {
  return `Merge task ${inputs.task_id} (attempt ${inputs.attempt}): ${title}\n\nbernstein-task: ${inputs.task_id}#${inputs.attempt}`;
}

/** Why the merge cannot run now without touching a human's work; null when it can. */
export async function mergeBlocker(repo: string, inputs: MergeInputs): Promise<string | null> {
  const half = await halfDoneMerge(repo);
  if (half.merge_head !== null && half.merge_head !== inputs.head_commit)
    return "a merge not started by bernstein is in progress";
  if (half.merge_head === null && half.index_lock) return "git's index.lock is held in the main worktree";
  if (half.merge_head !== null) return null; // ours, half done: the action aborts and redoes it
  const dirty = await dirtyPaths(repo);
  if (dirty.length > 0) return `the main worktree has uncommitted changes (${dirty.slice(0, 3).join(", ")})`;
  // A human switched branches: merging would land on theirs.
  const head = await runGit(repo, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
  if (head.code !== 0) return "HEAD is detached in the main worktree";
  const branch = head.stdout.trim();
  if (branch !== inputs.target_branch)
    return `the main worktree has '${branch}' checked out, not the target branch '${inputs.target_branch}'`;
  return null;
}

/** The idempotent action: merges unless the target already contains head_commit. */
export async function mergeAction(
  inputs: MergeInputs,
  s: MergeSettings,
): Promise<MergeResult & { already?: boolean }> {
  if (await containsCommit(s.repo, inputs.target_branch, inputs.head_commit)) {
    await abortOurHalfDoneMerge(s.repo, inputs.head_commit).catch(() => false);
    return {
      merged: true,
      merge_commit: await findMergeCommit(s.repo, inputs.target_branch, inputs.head_commit),
      already: true,
    };
  }
  await abortOurHalfDoneMerge(s.repo, inputs.head_commit);
  const branch = await checkedOutBranch(s.repo);
  if (branch !== inputs.target_branch) {
    throw new Error(
      `the main worktree has '${branch}' checked out, not the target branch '${inputs.target_branch}'`,
    );
  }
  return mergeHead(s.repo, {
    head_commit: inputs.head_commit,
    message: mergeMessage(inputs, s.title),
    strategy: s.strategy,
    identity: s.identity,
    date: s.date,
  });
}

function commitOutput(result: MergeResult): JsonObject {
  return result.merged
    ? { merge_commit: result.merge_commit }
    : { merge_commit: null, reason: result.reason, paths: result.paths };
}

/** Removes what the task no longer needs once its merge is committed (idempotent). */
export async function cleanUpAfterMerge(
  inputs: MergeInputs,
  s: MergeSettings,
  merged: boolean,
): Promise<void> {
  await removeTaskWorktree(s.repo, s.worktreePath);
  crashPoint("task_merged", "during_cleanup");
  // A conflicting branch is kept for a human.
  if (merged && !s.keepBranch) await deleteBranch(s.repo, inputs.branch);
}

/** The whole decision for a fresh merge, or to finish a replayed intent (same inputs). */
export async function decideMerge(
  log: DecisionLog,
  inputs: MergeInputs,
  s: MergeSettings,
  replay = false,
): Promise<MergeOutcome> {
  if (!replay) {
    const why = await mergeBlocker(s.repo, inputs);
    if (why) return { state: "waiting", why };
  }
  let result: (MergeResult & { already?: boolean }) | undefined;
  const action = async (): Promise<JsonObject> => {
    result = await mergeAction(inputs, s);
    return commitOutput(result);
  };
  const payload = inputs as unknown as JsonObject;
  if (replay) {
    const output = await action();
    await log.commit("task_merged", payload, output);
  } else {
    await log.decide("task_merged", payload, action);
  }
  const r = result!;
  await cleanUpAfterMerge(inputs, s, r.merged);
  if (!r.merged) return { state: "conflict", reason: r.reason, paths: r.paths };
  return { state: "merged", merge_commit: r.merge_commit, already: r.already === true };
}
