/**
 * The merge of a task's head commit into the target branch, in the repository's main worktree
 * (which must have the target branch checked out). A merge runs in two git steps — `merge
 * --no-commit` (writes MERGE_HEAD) then `commit` — so a crash between them leaves a state that
 * recovery recognises as ours (MERGE_HEAD is the task's head commit) and can abort cleanly.
 */
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../../errors/errors.js";
import { crashPoint } from "../../state/decisions.js";
import { gitDirOf, halfDoneMerge } from "./repo.js";
import { git, runGit, type GitIdentity } from "./run-git.js";

export const MERGE_STRATEGIES = ["merge", "ff-only", "rebase"] as const;
export type MergeStrategy = (typeof MERGE_STRATEGIES)[number];

export interface MergeRequest {
  head_commit: string;
  message: string;
  strategy: MergeStrategy;
  identity: GitIdentity;
  date?: string;
}

export type MergeResult =
  | { merged: true; merge_commit: string }
  | { merged: false; reason: "merge_conflict" | "not_fast_forward"; paths: string[] };

/** Paths git left unmerged (before the abort that restores them). */
async function conflictPaths(repo: string): Promise<string[]> {
  const out = await git(repo, ["diff", "--name-only", "-z", "--diff-filter=U"]);
  return out.split("\0").filter((p) => p.length > 0);
}

/** Merges `head_commit` into the checked-out branch of `repo`; a conflict is aborted (worktree as before). */
export async function mergeHead(repo: string, req: MergeRequest): Promise<MergeResult> {
  const env = { identity: req.identity, date: req.date };
  if (req.strategy !== "merge") {
    // rebase: the task branch was rebased onto the target before the intent, so it fast-forwards.
    const r = await runGit(repo, ["merge", "--ff-only", "--quiet", req.head_commit], env);
    if (r.code !== 0) return { merged: false, reason: "not_fast_forward", paths: [] };
    return { merged: true, merge_commit: req.head_commit };
  }
  crashPoint("task_merged", "before_git_merge");
  const r = await runGit(repo, ["merge", "--no-ff", "--no-commit", "--quiet", req.head_commit], env);
  if (r.code !== 0) {
    const paths = await conflictPaths(repo);
    await git(repo, ["merge", "--abort"]);
    if (paths.length === 0) throw new Error(`git merge: ${r.stderr.trim() || `exit ${r.code}`}`);
    return { merged: false, reason: "merge_conflict", paths };
  }
  await mergeCrashPointLocked(repo);
  crashPoint("task_merged", "after_merge_head");
  await git(repo, ["commit", "--no-verify", "--quiet", "-m", req.message], env);
  crashPoint("task_merged", "after_merge_commit");
  return { merged: true, merge_commit: (await git(repo, ["rev-parse", "HEAD"])).trim() };
}

/**
 * Fault injection (tests): `BERNSTEIN_CRASH_AT=task_merged:merge_index_locked` leaves what a git
 * killed inside `commit` leaves — MERGE_HEAD and a held `index.lock` — and SIGKILLs the process.
 */
async function mergeCrashPointLocked(repo: string): Promise<void> {
  if (process.env.BERNSTEIN_CRASH_AT !== "task_merged:merge_index_locked") return;
  await writeFile(path.join(await gitDirOf(repo), "index.lock"), "");
  process.kill(process.pid, "SIGKILL");
}

/**
 * Undoes a merge this task started and never finished: MERGE_HEAD must be `headCommit` (ours); the
 * index.lock a killed git left is removed first, since no git of ours runs any more. A merge in
 * progress that is not ours is a human's: refused, never touched.
 */
export async function abortOurHalfDoneMerge(repo: string, headCommit: string): Promise<boolean> {
  const half = await halfDoneMerge(repo);
  if (half.merge_head === null) return false;
  if (half.merge_head !== headCommit) {
    throw new UserError(
      `${repo}: a merge is already in progress (MERGE_HEAD ${half.merge_head.slice(0, 12)}); finish it or run 'git merge --abort'`,
      ExitCode.USAGE,
    );
  }
  if (half.index_lock) await rm(path.join(await gitDirOf(repo), "index.lock"), { force: true });
  await git(repo, ["merge", "--abort"]);
  return true;
}

/**
 * The commit that merged `headCommit` into `target`, for a target that already contains it: the
 * oldest commit on the ancestry path whose non-first parent is `headCommit`, or `headCommit` itself
 * (a fast-forward).
 */
export async function findMergeCommit(repo: string, target: string, headCommit: string): Promise<string> {
  const out = await git(repo, [
    "rev-list",
    "--parents",
    "--ancestry-path",
    `${headCommit}..refs/heads/${target}`,
  ]);
  let found = headCommit;
  for (const line of out.split("\n")) {
    const [commit, , ...others] = line.trim().split(" ");
    if (commit && others.includes(headCommit)) found = commit;
  }
  return found;
}

/**
 * The rebase strategy's first half, in the task's worktree before the intent: the branch is
 * rebased onto the target commit; a conflict is aborted and reported with its paths.
 */
export async function rebaseTaskBranch(
  worktreePath: string,
  onto: string,
  identity: GitIdentity,
  date?: string,
): Promise<MergeResult> {
  const r = await runGit(worktreePath, ["rebase", "--quiet", onto], { identity, date });
  if (r.code === 0) {
    return { merged: true, merge_commit: (await git(worktreePath, ["rev-parse", "HEAD"])).trim() };
  }
  const paths = await conflictPaths(worktreePath);
  await git(worktreePath, ["rebase", "--abort"]);
  return { merged: false, reason: "merge_conflict", paths };
}
