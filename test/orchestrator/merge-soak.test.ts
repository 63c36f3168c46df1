import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { dirtyPaths, halfDoneMerge } from "../../src/orchestrator/git/repo.js";
import type { MergeInputs } from "../../src/orchestrator/git/merge-decision.js";
import { taskBranch, taskWorktreePath } from "../../src/orchestrator/git/worktree.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir, withSeed } from "../helpers.js";
import {
  committedTask,
  driveMerge,
  driveMergeInProcess,
  gitSync,
  makeRepo,
  mergeCommitsOf,
} from "./support/git-repo.js";

/**
 * Soak with a real repository: tasks branch from the target at different moments, touch their own
 * files or the same shared file (conflicts), and the merging process is SIGKILLed at a random step
 * for about half of them, then recovered. Every task ends merged exactly once (its content on the
 * target) or failed with merge_conflict and its branch kept; never both, never neither.
 */
const PHASES = [
  "before_action",
  "before_git_merge",
  "after_merge_head",
  "after_merge_commit",
  "after_commit",
  "during_cleanup",
];

test("soak: many tasks, same and different files, random SIGKILLs: each merged once or failed with its conflict", () =>
  withSeed("BERNSTEIN_TEST_SEED", async (rand, seed) => {
    const tasks = Number(process.env.BERNSTEIN_MERGE_SOAK_TASKS ?? 12);
    const { dir, cleanup } = await scratchDir();
    try {
      const repo = path.join(dir, "repo");
      await makeRepo(repo, { "shared.txt": "0\n" });
      const sdd = path.join(repo, ".sdd");
      const { workspace } = await initWorkspace(sdd);
      const pending: { inputs: MergeInputs }[] = [];
      for (let i = 0; i < tasks; i++) {
        const taskId = `s${i}`;
        const file = rand() < 0.3 ? "shared.txt" : `own-${taskId}.txt`;
        pending.push(await committedTask(repo, sdd, taskId, file, `${taskId}\n`));
        // Merge some now, leave others to pile up (they then branch from older targets).
        while (pending.length > 0 && (rand() < 0.5 || i === tasks - 1)) {
          const t = pending.shift()!;
          const job = { sdd, repo, inputs: t.inputs };
          const crashAt =
            rand() < 0.5 ? `task_merged:${PHASES[Math.floor(rand() * PHASES.length)]}` : undefined;
          // A merge to be killed runs in a child, and its recovery in a fresh one (a real restart);
          // the others run in this process: a child would only add a Node start-up.
          const first = crashAt
            ? driveMerge({ ...job, mode: "merge" }, crashAt)
            : await driveMergeInProcess({ ...job, mode: "merge" });
          if (first.signal !== "SIGKILL")
            assert.equal(first.status, 0, `seed ${seed} ${t.inputs.task_id}: ${first.err}`);
          const again = crashAt
            ? driveMerge({ ...job, mode: "recover" })
            : await driveMergeInProcess({ ...job, mode: "recover" });
          assert.equal(again.status, 0, `seed ${seed} ${t.inputs.task_id}: ${again.err}`);
        }
      }
      const outcomes = new Map<string, (string | null)[]>();
      for (const run of await listRuns(workspace)) {
        for await (const { entry } of readWalEntries(run.file)) {
          if (entry.decision_type !== "task_merged" || !entry.committed) continue;
          const id = String(entry.inputs.task_id);
          outcomes.set(id, [
            ...(outcomes.get(id) ?? []),
            (entry.output.merge_commit as string | null) ?? null,
          ]);
        }
      }
      let merged = 0;
      for (let i = 0; i < tasks; i++) {
        const id = `s${i}`;
        const why = `seed ${seed} (BERNSTEIN_TEST_SEED=${seed}), task ${id}`;
        const commits = mergeCommitsOf(repo, "main", `${id}#1`);
        const recorded = outcomes.get(id) ?? [];
        assert.ok(recorded.length >= 1, `${why}: no commit entry`);
        assert.equal(new Set(recorded).size, 1, `${why}: commit entries disagree: ${recorded.join(",")}`);
        if (recorded[0] === null) {
          assert.equal(commits.length, 0, `${why}: conflict recorded but merged`);
          assert.notEqual(
            gitSync(repo, "branch", "--list", taskBranch(id, 1)),
            "",
            `${why}: conflicting branch not kept`,
          );
        } else {
          merged++;
          assert.deepEqual(commits, [recorded[0]], `${why}: merge commits`);
          assert.equal(
            gitSync(repo, "branch", "--list", taskBranch(id, 1)),
            "",
            `${why}: merged branch left`,
          );
        }
        assert.equal(existsSync(taskWorktreePath(sdd, id, 1)), false, `${why}: worktree left`);
      }
      assert.ok(merged > 0, `seed ${seed}: nothing merged`);
      assert.deepEqual(await halfDoneMerge(repo), { merge_head: null, index_lock: false });
      assert.deepEqual(await dirtyPaths(repo), []);
      assert.ok((await readFile(path.join(repo, "shared.txt"), "utf8")).length > 0);
    } finally {
      await cleanup();
    }
  }));
