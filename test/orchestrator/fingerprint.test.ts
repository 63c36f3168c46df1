import assert from "node:assert/strict";
import { cp, mkdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { fingerprintWal } from "../../src/wal/fingerprint.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { Workspace, initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";
import { makeRepo } from "./support/git-repo.js";

/** A backlog with priorities, a dependency, a retried failure and agents reporting cost. */
async function buildBacklog(project: string, variant = 0): Promise<void> {
  const { workspace } = await initWorkspace(path.join(project, ".sdd"));
  await addTask(workspace, { id: "a", title: "a", command: "echo a", priority: 3 });
  await addTask(workspace, {
    id: "b",
    title: "b",
    command: `echo '{"cost_usd": 0.25, "input_tokens": 100, "output_tokens": 7, "model": "m"}'`,
    priority: 1,
  });
  // Fails the first time in each workspace (the marker lives in the project folder), then succeeds.
  await addTask(workspace, {
    id: "c",
    title: "c",
    command: "test -f flaky.marker || { touch flaky.marker; exit 4; }",
    maxRetries: 2,
    priority: 2,
  });
  await addTask(workspace, {
    id: "d",
    title: "d",
    command: "sleep 0.05",
    dependsOn: ["a", "c"],
    priority: 1 + variant,
  });
  await addTask(workspace, { id: "e", title: "e", command: "exit 9", priority: 2 });
}

async function runAndFingerprint(
  project: string,
  stateHome: string,
  extra: string[] = [],
): Promise<{ fp: string; code: number | null; stderr: string }> {
  const r = await runCli(
    [
      "--sdd",
      path.join(project, ".sdd"),
      "start",
      "--until-idle",
      "--max-agents",
      "1",
      "--retry-backoff",
      "10",
      "--poll",
      "20",
      "--checkpoint-every",
      "3",
      ...extra,
    ],
    {
      cwd: project,
      env: { XDG_STATE_HOME: stateHome, BERNSTEIN_AUDIT_KEY_PATH: "" },
    },
  );
  const runs = await listRuns(new Workspace(path.join(project, ".sdd")));
  assert.equal(runs.length, 1);
  return { fp: (await fingerprintWal(runs[0].file)).fingerprint, code: r.code, stderr: r.stderr };
}

test("--max-agents 1: two runs of the same backlog have the same WAL fingerprint", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-fp-");
  try {
    const state = path.join(dir, "state");
    await mkdir(state);
    const one = path.join(dir, "one");
    const two = path.join(dir, "two");
    const other = path.join(dir, "other");
    await buildBacklog(one);
    await cp(one, two, { recursive: true }); // the same backlog files
    await buildBacklog(other, 1); // one priority differs
    const r1 = await runAndFingerprint(one, state);
    const r2 = await runAndFingerprint(two, state);
    const r3 = await runAndFingerprint(other, state);
    // Task e fails terminally, so --until-idle exits 1 — the same in both runs.
    assert.equal(r1.code, 1, r1.stderr);
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(r1.stderr, /task e failed: exit code 9/);
    assert.equal(r1.fp, r2.fp, "same backlog, same agents: same fingerprint");
    assert.notEqual(r1.fp, r3.fp, "a different backlog gives a different fingerprint");
  } finally {
    await cleanup();
  }
});

/** A repository with a backlog of worktree tasks (two files, one of them changed twice). */
async function buildRepoBacklog(project: string): Promise<void> {
  await makeRepo(project, { "notes.txt": "0\n" });
  const { workspace } = await initWorkspace(path.join(project, ".sdd"));
  await addTask(workspace, { id: "w1", title: "w1", command: "echo 1 >> notes.txt", worktree: true });
  await addTask(workspace, { id: "w2", title: "w2", command: "echo 2 > other.txt", worktree: true });
  await addTask(workspace, { id: "w3", title: "w3", command: "echo 3 >> notes.txt", worktree: true });
}

async function mergeCommitsInWal(project: string): Promise<string[]> {
  const runs = await listRuns(new Workspace(path.join(project, ".sdd")));
  const out: string[] = [];
  for await (const { entry } of readWalEntries(runs[0].file))
    if (entry.decision_type === "task_merged" && entry.committed) out.push(String(entry.output.merge_commit));
  return out;
}

test("--max-agents 1 with worktrees: the same backlog on the same repository state gives the same fingerprint (commit hashes left out)", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-fp-wt-");
  try {
    const state = path.join(dir, "state");
    await mkdir(state);
    const one = path.join(dir, "one");
    const two = path.join(dir, "two");
    await buildRepoBacklog(one);
    await buildRepoBacklog(two);
    const r1 = await runAndFingerprint(one, state, ["--worktrees"]);
    const r2 = await runAndFingerprint(two, state, ["--worktrees"]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    const m1 = await mergeCommitsInWal(one);
    const m2 = await mergeCommitsInWal(two);
    assert.equal(m1.length, 3);
    // Commits made at different times have different hashes: the fingerprint must not see them.
    assert.notDeepEqual(m1, m2);
    assert.equal(r1.fp, r2.fp);
  } finally {
    await cleanup();
  }
});
