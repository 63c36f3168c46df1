/** Real git repositories for the worktree and merge tests. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { MergeInputs } from "../../../src/orchestrator/git/merge-decision.js";
import {
  addTaskWorktree,
  commitLeftovers,
  taskBranch,
  taskWorktreePath,
} from "../../../src/orchestrator/git/worktree.js";

/** Every step of a `task_merged` decision a crash test kills the process at (BERNSTEIN_CRASH_AT). */
export const MERGE_CRASH_POINTS = [
  "task_merged:before_action",
  "task_merged:before_git_merge",
  "task_merged:merge_index_locked",
  "task_merged:after_merge_head",
  "task_merged:after_merge_commit",
  "task_merged:after_action",
  "task_merged:after_commit",
  "task_merged:during_cleanup",
];

export const TEST_IDENTITY = { name: "bernstein test", email: "test@bernstein.invalid" };

/** `git` in `cwd`, synchronously; returns trimmed stdout. */
export function gitSync(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: TEST_IDENTITY.name,
      GIT_AUTHOR_EMAIL: TEST_IDENTITY.email,
      GIT_COMMITTER_NAME: TEST_IDENTITY.name,
      GIT_COMMITTER_EMAIL: TEST_IDENTITY.email,
      GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z",
      GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z",
    },
  }).trim();
}

/** A repository on branch `main` with `files` committed, and `.sdd/` ignored. */
export async function makeRepo(
  dir: string,
  files: Record<string, string> = { "README.md": "hello\n" },
): Promise<string> {
  await mkdir(dir, { recursive: true });
  gitSync(dir, "init", "--quiet", "-b", "main");
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  await writeFile(path.join(dir, ".gitignore"), ".sdd/\n");
  gitSync(dir, "add", "--all");
  gitSync(dir, "commit", "--quiet", "-m", "initial");
  return gitSync(dir, "rev-parse", "HEAD");
}

/** Commits on `branch` whose message carries the task trailer of `taskId#attempt`. */
export function mergeCommitsOf(repo: string, branch: string, agentId: string): string[] {
  const out = gitSync(repo, "log", "--merges", "--format=%H", `--grep=bernstein-task: ${agentId}$`, branch);
  return out === "" ? [] : out.split("\n");
}

/** A task attempt's worktree with `file` written and committed: the inputs of its `task_merged`. */
export async function committedTask(
  repo: string,
  sdd: string,
  taskId: string,
  file: string,
  content: string,
): Promise<{ inputs: MergeInputs; wt: string; branch: string }> {
  const branch = taskBranch(taskId, 1);
  const wt = taskWorktreePath(sdd, taskId, 1);
  await addTaskWorktree(repo, wt, branch, gitSync(repo, "rev-parse", "main"));
  await mkdir(path.dirname(path.join(wt, file)), { recursive: true });
  await writeFile(path.join(wt, file), content);
  const head = await commitLeftovers(wt, `task ${taskId}: edit ${file}`, TEST_IDENTITY);
  return {
    inputs: { task_id: taskId, attempt: 1, branch, head_commit: head, target_branch: "main" },
    wt,
    branch,
  };
}

const DRIVER = path.join(path.dirname(fileURLToPath(import.meta.url)), "merge-driver.js");

/** Runs support/merge-driver.js in a child (SIGKILLed at `crashAt`, when given). */
export function driveMerge(
  job: { mode: "merge" | "recover"; sdd: string; repo: string; inputs: MergeInputs },
  crashAt?: string,
): { status: number | null; signal: string | null; out: string; err: string } {
  const env = { ...process.env };
  delete env.BERNSTEIN_CRASH_AT;
  if (crashAt) env.BERNSTEIN_CRASH_AT = crashAt;
  const r = spawnSync(process.execPath, [DRIVER, JSON.stringify(job)], { env, encoding: "utf8" });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/**
 * What driveMerge does, in the test's own process: for the runs nobody kills, where a child would
 * only add a Node start-up. The state it works on is on disk either way (repository, WAL).
 */
export async function driveMergeInProcess(job: {
  mode: "merge" | "recover";
  sdd: string;
  repo: string;
  inputs: MergeInputs;
}): Promise<{ status: number | null; signal: string | null; out: string; err: string }> {
  assert.equal(process.env.BERNSTEIN_CRASH_AT, undefined, "no crash point in the test's own process");
  const { runMergeJob } = await import("./merge-driver.js");
  return { status: 0, signal: null, out: await runMergeJob(job), err: "" };
}
