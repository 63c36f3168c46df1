import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runDoctor } from "../../src/orchestrator/doctor.js";
import { gitMergeChecks } from "../../src/orchestrator/git/merge-checks.js";
import { decideMerge } from "../../src/orchestrator/git/merge-decision.js";
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
import { scratchDir } from "../helpers.js";
import { gitSync, makeRepo, TEST_IDENTITY } from "./support/git-repo.js";

function verdicts(checks: { name: string; verdict: string }[]): Record<string, string> {
  return Object.fromEntries(checks.filter((c) => c.name.startsWith("git-")).map((c) => [c.name, c.verdict]));
}

test("doctor: a repository behind its WAL's merges, a stuck MERGE_HEAD, leftovers of a merged task", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const repo = path.join(dir, "repo");
    const before = await makeRepo(repo);
    const sdd = path.join(repo, ".sdd");
    const { workspace } = await initWorkspace(sdd);
    assert.deepEqual(await gitMergeChecks(workspace), []);
    const wal = await WalWriter.open(workspace, newRunId());
    const log = new DecisionLog({ ws: workspace, wal, audit: null, state: emptyState() });
    const branch = taskBranch("a", 1);
    const wt = taskWorktreePath(sdd, "a", 1);
    await addTaskWorktree(repo, wt, branch, before);
    await writeFile(path.join(wt, "a.txt"), "a\n");
    const head = await commitLeftovers(wt, "task a: edit", TEST_IDENTITY);
    const inputs = { task_id: "a", attempt: 1, branch, head_commit: head, target_branch: "main" };
    const settings = {
      repo,
      worktreePath: wt,
      title: "edit",
      strategy: "merge" as const,
      identity: TEST_IDENTITY,
    };
    assert.equal((await decideMerge(log, inputs, settings)).state, "merged");
    await wal.close();
    const doctor = await runDoctor(sdd);
    assert.deepEqual(verdicts(doctor.checks), {
      "git-merge-state": "pass",
      "git-merges": "pass",
      "git-worktrees": "pass",
    });

    // The repository restored from a copy older than the workspace; a branch of the merged task is back.
    gitSync(repo, "reset", "--quiet", "--hard", before);
    gitSync(repo, "branch", branch, head);
    const behind = await gitMergeChecks(workspace);
    assert.deepEqual(verdicts(behind), {
      "git-merge-state": "pass",
      "git-merges": "fail",
      "git-worktrees": "warn",
    });
    assert.match(
      behind.find((c) => c.name === "git-merges")!.detail,
      /missing from the repository .*task a-1/,
    );

    gitSync(repo, "merge", "--no-ff", "--no-commit", "--quiet", head);
    const stuck = await gitMergeChecks(workspace);
    assert.equal(verdicts(stuck)["git-merge-state"], "fail");
    assert.match(stuck[0]!.detail, /merge is stuck/);
  } finally {
    await cleanup();
  }
});
