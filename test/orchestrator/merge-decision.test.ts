import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { decideMerge, type MergeSettings } from "../../src/orchestrator/git/merge-decision.js";
import { DecisionLog } from "../../src/state/decisions.js";
import { emptyState } from "../../src/state/reducer.js";
import { readWalEntries } from "../../src/wal/reader.js";
import { newRunId, WalWriter } from "../../src/wal/writer.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";
import { committedTask, gitSync, makeRepo, mergeCommitsOf, TEST_IDENTITY } from "./support/git-repo.js";

async function setUp(dir: string) {
  const repo = path.join(dir, "repo");
  await makeRepo(repo, { "same.txt": "base\n" });
  const sdd = path.join(repo, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const wal = await WalWriter.open(workspace, newRunId());
  const log = new DecisionLog({ ws: workspace, wal, audit: null, state: emptyState() });
  const task = async (taskId: string, content: string) => {
    const { inputs, wt, branch } = await committedTask(repo, sdd, taskId, "same.txt", content);
    const settings: MergeSettings = {
      repo,
      worktreePath: wt,
      title: "edit",
      strategy: "merge",
      identity: TEST_IDENTITY,
    };
    return { inputs, settings, wt, branch };
  };
  const entries = async () => {
    await wal.drain();
    const out = [];
    for await (const { entry } of readWalEntries(wal.file)) out.push(entry);
    return out;
  };
  return { repo, wal, log, task, entries };
}

test("a merged task: intent, merge commit naming the task, commit entry with merge_commit, worktree and branch removed", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const s = await setUp(dir);
    const a = await s.task("a", "a\n");
    const outcome = await decideMerge(s.log, a.inputs, a.settings);
    assert.equal(outcome.state, "merged");
    const merges = mergeCommitsOf(s.repo, "main", "a#1");
    assert.deepEqual(merges, [(outcome as { merge_commit: string }).merge_commit]);
    assert.match(gitSync(s.repo, "log", "-1", "--format=%s", "main"), /^Merge task a \(attempt 1\): edit$/);
    const merged = (await s.entries()).filter((e) => e.decision_type === "task_merged");
    assert.deepEqual(
      merged.map((e) => [e.committed, e.inputs, e.output]),
      [
        [false, { ...a.inputs }, {}],
        [true, { ...a.inputs }, { merge_commit: merges[0]! }],
      ],
    );
    assert.equal(existsSync(a.wt), false);
    assert.equal(gitSync(s.repo, "branch", "--list", a.branch), "");
    await s.wal.close();
  } finally {
    await cleanup();
  }
});

test("a conflict: aborted cleanly, commit entry with merge_conflict and the paths, branch kept", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const s = await setUp(dir);
    const a = await s.task("a", "a\n");
    const b = await s.task("b", "b\n");
    assert.equal((await decideMerge(s.log, a.inputs, a.settings)).state, "merged");
    const head = gitSync(s.repo, "rev-parse", "main");
    const outcome = await decideMerge(s.log, b.inputs, b.settings);
    assert.deepEqual(outcome, { state: "conflict", reason: "merge_conflict", paths: ["same.txt"] });
    assert.equal(gitSync(s.repo, "rev-parse", "main"), head);
    assert.equal(gitSync(s.repo, "status", "--porcelain"), "");
    assert.equal(gitSync(s.repo, "rev-parse", b.branch), b.inputs.head_commit);
    const last = (await s.entries()).at(-1)!;
    assert.deepEqual(
      [last.decision_type, last.committed, last.output],
      ["task_merged", true, { merge_commit: null, reason: "merge_conflict", paths: ["same.txt"] }],
    );
    await s.wal.close();
  } finally {
    await cleanup();
  }
});

test("a dirty main worktree is never touched: the merge waits, says why, and writes no intent", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const s = await setUp(dir);
    const a = await s.task("a", "a\n");
    await writeFile(path.join(s.repo, "human.txt"), "wip\n");
    const outcome = await decideMerge(s.log, a.inputs, a.settings);
    assert.equal(outcome.state, "waiting");
    assert.match((outcome as { why: string }).why, /uncommitted changes \(human\.txt\)/);
    assert.equal((await s.entries()).filter((e) => e.decision_type === "task_merged").length, 0);
    assert.equal(existsSync(a.wt), true);
    await s.wal.close();
  } finally {
    await cleanup();
  }
});
