/**
 * The cost of agents in git worktrees, for `bench:orchestrator`: on a repository of `files` files,
 * each task gets a worktree, writes one file, has it committed as leftovers and merged by the
 * `task_merged` decision (real WAL, fsyncs, worktree and branch removal). The same task without
 * worktrees writes its file in the project folder and nothing else, so the per-task time here is
 * the overhead. With `agents` > 1, that many tasks prepare their worktrees at once and their
 * merges queue for the one main worktree.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { decideMerge } from "../../src/orchestrator/git/merge-decision.js";
import { git, type GitIdentity } from "../../src/orchestrator/git/run-git.js";
import {
  addTaskWorktree,
  commitLeftovers,
  taskBranch,
  taskWorktreePath,
} from "../../src/orchestrator/git/worktree.js";
import { DecisionLog } from "../../src/state/decisions.js";
import { emptyState } from "../../src/state/reducer.js";
import { newRunId, WalWriter } from "../../src/wal/writer.js";
import { initWorkspace } from "../../src/workspace/layout.js";

const identity: GitIdentity = { name: "bench", email: "bench@bernstein.invalid" };

async function makeBigRepo(repo: string, files: number): Promise<void> {
  await mkdir(repo, { recursive: true });
  await git(repo, ["init", "--quiet", "-b", "main"]);
  for (let i = 0; i < files; i++) {
    const dir = path.join(repo, "src", `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, `f${i}.txt`), `file ${i}\n`);
  }
  await writeFile(path.join(repo, ".gitignore"), ".sdd/\n");
  await git(repo, ["add", "--all"]);
  await git(repo, ["commit", "--quiet", "-m", "initial"], { identity });
}

export interface MergeBenchResult {
  tasks: number;
  agents: number;
  wall_s: number;
  per_task_ms: number;
  merge_decisions_per_s: number;
}

export async function benchWorktreeMerges(
  dir: string,
  files: number,
  tasks: number,
  agents: number,
): Promise<MergeBenchResult> {
  const repo = path.join(dir, `repo-${agents}`);
  await makeBigRepo(repo, files);
  const sdd = path.join(repo, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const wal = await WalWriter.open(workspace, newRunId());
  const log = new DecisionLog({ ws: workspace, wal, audit: null, state: emptyState() });
  let mergeQueue = Promise.resolve();
  const one = async (i: number): Promise<void> => {
    const taskId = `b${i}`;
    const branch = taskBranch(taskId, 1);
    const wt = taskWorktreePath(sdd, taskId, 1);
    await addTaskWorktree(repo, wt, branch, (await git(repo, ["rev-parse", "main"])).trim());
    await writeFile(path.join(wt, `task-${taskId}.txt`), `${taskId}\n`);
    const head = await commitLeftovers(wt, `task ${taskId}: bench`, identity);
    const inputs = { task_id: taskId, attempt: 1, branch, head_commit: head, target_branch: "main" };
    const settings = { repo, worktreePath: wt, title: "bench", strategy: "merge" as const, identity };
    // One main worktree: merges into it run one at a time.
    const merged = mergeQueue.then(async () => {
      const outcome = await decideMerge(log, inputs, settings);
      if (outcome.state !== "merged") throw new Error(`bench: task ${taskId} ${outcome.state}`);
    });
    mergeQueue = merged.catch(() => undefined);
    await merged;
  };
  const t0 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: agents }, async () => {
      while (next < tasks) await one(next++);
    }),
  );
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  await wal.close();
  return {
    tasks,
    agents,
    wall_s: +wall.toFixed(3),
    per_task_ms: +((wall / tasks) * 1000).toFixed(1),
    merge_decisions_per_s: +(tasks / wall).toFixed(2),
  };
}
