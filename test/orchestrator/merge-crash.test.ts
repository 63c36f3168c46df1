import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { halfDoneMerge, dirtyPaths } from "../../src/orchestrator/git/repo.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { scratchDir, withSeed } from "../helpers.js";
import {
  committedTask,
  driveMerge,
  driveMergeInProcess,
  gitSync,
  makeRepo,
  MERGE_CRASH_POINTS,
  mergeCommitsOf,
} from "./support/git-repo.js";

/**
 * SIGKILL at every step of a `task_merged` decision — after the intent, before `git merge`, with
 * MERGE_HEAD written (and with index.lock held), after the merge commit but before the WAL commit,
 * after the WAL commit, during the worktree removal — then a restart that replays the intent. For
 * every point: exactly one merge commit for the task attempt on the target, the WAL's commit entry
 * names it, no half-done merge, no worktree or branch left. The order of the points and which file
 * each task touches come from a seed (printed on failure).
 */

/** Every `task_merged` commit entry of every run, by agent id. */
async function mergeCommitEntries(ws: Workspace): Promise<Map<string, string[]>> {
  const byAgent = new Map<string, string[]>();
  for (const run of await listRuns(ws)) {
    for await (const { entry: e } of readWalEntries(run.file)) {
      if (e.decision_type !== "task_merged" || !e.committed) continue;
      const key = `${String(e.inputs.task_id)}#${String(e.inputs.attempt)}`;
      byAgent.set(key, [...(byAgent.get(key) ?? []), String(e.output.merge_commit)]);
    }
  }
  return byAgent;
}

test("task_merged survives SIGKILL at every step: one merge commit per task attempt, never none", () =>
  withSeed("BERNSTEIN_TEST_SEED", async (rand, seed) => {
    const { dir, cleanup } = await scratchDir();
    try {
      const repo = path.join(dir, "repo");
      await makeRepo(repo, { "shared.txt": "0\n" });
      const sdd = path.join(repo, ".sdd");
      const { workspace } = await initWorkspace(sdd);
      const points = [...MERGE_CRASH_POINTS].sort(() => rand() - 0.5);
      for (const [i, point] of points.entries()) {
        const taskId = `t${i}`;
        const why = `seed ${seed}, point ${point} (task ${taskId})`;
        // Different files, some of them in one shared folder.
        const file = rand() < 0.5 ? `own-${taskId}.txt` : path.join("dir", `${taskId}.txt`);
        const { inputs, wt, branch } = await committedTask(repo, sdd, taskId, file, `${taskId}\n`);
        const job = { sdd, repo, inputs };
        const crashed = driveMerge({ ...job, mode: "merge" }, point);
        assert.equal(crashed.signal, "SIGKILL", `${why}: the driver was not killed: ${crashed.err}`);
        // The restart: a new run in this process (a child would only add a Node start-up), replaying
        // from disk what the killed process left.
        const recovered = await driveMergeInProcess({ ...job, mode: "recover" });
        assert.equal(recovered.status, 0, `${why}: recovery failed: ${recovered.err}`);
        assert.equal(JSON.parse(recovered.out).failed, 0, `${why}: ${recovered.out}`);

        const merges = mergeCommitsOf(repo, "main", `${taskId}#1`);
        assert.equal(merges.length, 1, `${why}: merge commits ${merges.join(",")}`);
        const entries = (await mergeCommitEntries(workspace)).get(`${taskId}#1`) ?? [];
        assert.ok(entries.length >= 1, `${why}: no task_merged commit entry`);
        assert.ok(
          entries.every((c) => c === merges[0]),
          `${why}: commit entries ${entries.join(",")} vs ${merges[0]}`,
        );
        assert.deepEqual(await halfDoneMerge(repo), { merge_head: null, index_lock: false }, why);
        assert.deepEqual(await dirtyPaths(repo), [], why);
        assert.equal(existsSync(wt), false, `${why}: worktree left`);
        assert.equal(gitSync(repo, "branch", "--list", branch), "", `${why}: branch left`);
        assert.equal(gitSync(repo, "worktree", "list", "--porcelain").split("\n\n").length, 1, why);
      }
    } finally {
      await cleanup();
    }
  }));
