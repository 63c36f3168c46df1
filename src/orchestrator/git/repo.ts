/**
 * Questions about a repository, asked of git itself: is this a repository, which branch is checked
 * out in the main worktree, does a branch exist, is the main worktree dirty, is a merge half done.
 * None of these change anything.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../../errors/errors.js";
import { git, runGit } from "./run-git.js";

/** True when `dir` is inside a git work tree. */
export async function isRepo(dir: string): Promise<boolean> {
  if (!existsSync(dir)) return false;
  const r = await runGit(dir, ["rev-parse", "--is-inside-work-tree"]);
  return r.code === 0 && r.stdout.trim() === "true";
}

/**
 * False only where git itself could find no work tree: no `.git` (folder or file) in `dir` or any
 * folder above it, and no GIT_DIR or GIT_WORK_TREE to point git elsewhere. Every backup asks
 * repositoryHead, and most workspaces outside a repository would otherwise start git for a "no".
 */
function mayBeInWorkTree(dir: string): boolean {
  if (process.env.GIT_DIR || process.env.GIT_WORK_TREE) return true;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(path.join(d, ".git"))) return true;
    if (path.dirname(d) === d) return false;
  }
}

/** The top folder of the repository's main worktree (not of a linked worktree). */
export async function mainWorktreeOf(dir: string): Promise<string> {
  const common = (await git(dir, ["rev-parse", "--path-format=absolute", "--git-common-dir"])).trim();
  return path.dirname(common);
}

/**
 * `dir` must be a repository: the check of `task add --worktree` and of `start`. `askedBy` names
 * what asked for a worktree (`--worktree`, the file's `worktrees: true`), so the line says what to
 * drop.
 */
export async function requireRepo(dir: string, askedBy: string): Promise<void> {
  if (!(await isRepo(dir))) {
    throw new UserError(
      `${dir} is not a git repository (worktrees need one: git init, or drop ${askedBy})`,
      ExitCode.USAGE,
    );
  }
}

/** The branch checked out in `dir`; a detached HEAD is an error (a merge needs a branch to move). */
export async function checkedOutBranch(dir: string): Promise<string> {
  const r = await runGit(dir, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
  if (r.code !== 0) {
    throw new UserError(
      `${dir}: HEAD is detached (check out the target branch before merging into it)`,
      ExitCode.USAGE,
    );
  }
  return r.stdout.trim();
}

export async function branchExists(dir: string, branch: string): Promise<boolean> {
  const r = await runGit(dir, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]);
  return r.code === 0;
}

/** The commit a branch points at; a missing branch is a usage error. */
export async function branchCommit(dir: string, branch: string): Promise<string> {
  const r = await runGit(dir, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}^{commit}`]);
  if (r.code !== 0) throw new UserError(`target branch '${branch}' does not exist in ${dir}`, ExitCode.USAGE);
  return r.stdout.trim();
}

/** Tracked changes or untracked files outside .sdd/ (a human's work the orchestrator never touches). */
export async function dirtyPaths(dir: string): Promise<string[]> {
  const out = await git(dir, [
    "status",
    "--porcelain=v1",
    "-z",
    "--untracked-files=all",
    "--",
    ".",
    ":(exclude).sdd",
  ]);
  return out
    .split("\0")
    .filter((rec) => rec.length > 3)
    .map((rec) => rec.slice(3));
}

/** What a killed `git merge` or `git commit` leaves in the main worktree's git folder. */
export interface HalfDoneMerge {
  /** The commit being merged (MERGE_HEAD), when a merge is in progress. */
  merge_head: string | null;
  /** index.lock exists (a git process holds it, or one died holding it). */
  index_lock: boolean;
}

export async function halfDoneMerge(dir: string): Promise<HalfDoneMerge> {
  const gitDir = await gitDirOf(dir);
  const mergeHeadFile = path.join(gitDir, "MERGE_HEAD");
  let mergeHead: string | null = null;
  if (existsSync(mergeHeadFile)) {
    mergeHead = (await readFile(mergeHeadFile, "utf8")).split("\n")[0]!.trim() || null;
  }
  return { merge_head: mergeHead, index_lock: existsSync(path.join(gitDir, "index.lock")) };
}

/** The absolute git folder of `dir` (the main worktree's `.git`). */
export async function gitDirOf(dir: string): Promise<string> {
  return (await git(dir, ["rev-parse", "--path-format=absolute", "--git-dir"])).trim();
}

/** Does `target` (a branch) contain `commit`? Ancestry, never commit messages. */
export async function containsCommit(dir: string, target: string, commit: string): Promise<boolean> {
  const r = await runGit(dir, ["merge-base", "--is-ancestor", commit, `refs/heads/${target}`]);
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  throw new UserError(`git merge-base: ${r.stderr.trim() || `exit ${r.code}`}`, ExitCode.USAGE);
}

/** The main worktree's HEAD: its commit and branch (null when detached); null for no repository or commit. */
export async function repositoryHead(dir: string): Promise<{ commit: string; branch: string | null } | null> {
  if (!existsSync(dir) || !mayBeInWorkTree(dir)) return null;
  // One git for the three answers (every backup asks): inside a work tree, HEAD's commit, and the
  // ref HEAD names (`HEAD` itself when detached). No commit yet fails the whole call, as no
  // repository does. A backup records this when it can; neither, nor git missing, fails it.
  const r = await runGit(dir, [
    "rev-parse",
    "--is-inside-work-tree",
    "HEAD^{commit}",
    "--symbolic-full-name",
    "HEAD",
  ]).catch(() => undefined);
  const [inside, commit, ref] = r?.code === 0 ? r.stdout.trim().split("\n") : [];
  if (inside !== "true" || !commit) return null;
  // No ref: a tag or branch named HEAD makes the name ambiguous, which only symbolic-ref ignores.
  if (ref === undefined) {
    const branch = await runGit(dir, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
    return { commit, branch: branch.code === 0 ? branch.stdout.trim() : null };
  }
  return { commit, branch: ref.startsWith("refs/heads/") ? ref.slice("refs/heads/".length) : null };
}
