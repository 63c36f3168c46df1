/**
 * A task's own worktree and branch: `.sdd/worktrees/<task_id>-<attempt>` on branch
 * `bernstein/<task_id>-<attempt>`, created from the target branch's commit recorded in the spawn
 * decision, and the commit of what the agent left uncommitted.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { ExitCode, UserError } from "../../errors/errors.js";
import { branchExists } from "./repo.js";
import { git, runGit, type GitIdentity } from "./run-git.js";

export function taskBranch(taskId: string, attempt: number): string {
  return `bernstein/${taskId}-${attempt}`;
}

export function taskWorktreePath(sddDir: string, taskId: string, attempt: number): string {
  return path.join(sddDir, "worktrees", `${taskId}-${attempt}`);
}

/**
 * `git worktree add -b <branch> <path> <base>`. Idempotent for a replayed spawn: a worktree already
 * at `worktreePath` on `branch` is kept. A branch of that name that is not ours is a collision.
 */
export async function addTaskWorktree(
  repo: string,
  worktreePath: string,
  branch: string,
  base: string,
): Promise<void> {
  if (existsSync(worktreePath)) {
    const r = await runGit(worktreePath, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
    if (r.code === 0 && r.stdout.trim() === branch) return;
  }
  if (await branchExists(repo, branch)) {
    throw new UserError(
      `branch '${branch}' already exists in ${repo} (delete it or let doctor report whose it is)`,
      ExitCode.USAGE,
    );
  }
  await git(repo, ["worktree", "add", "-b", branch, worktreePath, base]);
}

/** Removes the worktree (forced: its work is merged or kept on the branch) and prunes git's record. */
export async function removeTaskWorktree(repo: string, worktreePath: string): Promise<void> {
  if (existsSync(worktreePath)) {
    const r = await runGit(repo, ["worktree", "remove", "--force", "--force", worktreePath]);
    if (r.code !== 0 && existsSync(worktreePath)) throw new Error(`git worktree remove: ${r.stderr.trim()}`);
  }
  // A removal killed half-way leaves git's administrative entry: prune drops entries whose folder is gone.
  await git(repo, ["worktree", "prune"]);
}

/** Deletes a task branch; absent is fine (a replay after the deletion). */
export async function deleteBranch(repo: string, branch: string): Promise<void> {
  if (!(await branchExists(repo, branch))) return;
  await git(repo, ["branch", "-D", branch]);
}

/**
 * Commits whatever the agent left uncommitted in its worktree as `task <id>: <title>`; returns the
 * branch's head commit afterwards (unchanged when there was nothing to commit).
 */
export async function commitLeftovers(
  worktreePath: string,
  message: string,
  identity: GitIdentity,
  date?: string,
): Promise<string> {
  await git(worktreePath, ["add", "--all", "--", "."]);
  const staged = await runGit(worktreePath, ["diff", "--cached", "--quiet"]);
  if (staged.code === 1) {
    await git(worktreePath, ["commit", "--no-verify", "--quiet", "-m", message], { identity, date });
  } else if (staged.code !== 0) {
    throw new Error(`git diff --cached: ${staged.stderr.trim()}`);
  }
  return (await git(worktreePath, ["rev-parse", "HEAD"])).trim();
}
