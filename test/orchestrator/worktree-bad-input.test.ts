import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";
import { gitSync, makeRepo } from "./support/git-repo.js";

/** Bad input around worktree tasks: one line on stderr, exit 2, nothing run or written. */
async function workspaceIn(project: string) {
  const sdd = path.join(project, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(project, "..", "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli(["--sdd", sdd, ...args], { cwd: project, env: { ...env, ...extra } });
  return { ws: workspace, cli };
}

function assertOneLine(r: { code: number | null; stderr: string }, code: number, re: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

test("task add --worktree outside a git repository: exit 2, one line, no task written", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-bad-");
  try {
    const project = path.join(dir, "plain");
    await mkdir(project);
    const { ws, cli } = await workspaceIn(project);
    const r = await cli(["task", "add", "x", "--id", "x", "--command", "true", "--worktree"]);
    assertOneLine(r, 2, /is not a git repository \(worktrees need one: git init, or drop --worktree\)$/m);
    assert.equal(existsSync(path.join(ws.backlogDir("open"), "x.md")), false);
  } finally {
    await cleanup();
  }
});

test("start outside a git repository names what asked for worktrees: the flag, or the configuration file (in the foreground and with --detach)", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-bad-start-");
  try {
    const project = path.join(dir, "plain");
    await mkdir(project);
    const { ws, cli } = await workspaceIn(project);
    assertOneLine(
      await cli(["start", "--until-idle", "--worktrees"]),
      2,
      /is not a git repository \(worktrees need one: git init, or drop --worktrees\)$/m,
    );
    await writeFile(path.join(project, "bernstein.yaml"), "worktrees: true\n");
    assertOneLine(
      await cli(["start", "--until-idle"]),
      2,
      /is not a git repository \(worktrees need one: git init, or drop `worktrees: true` from bernstein\.yaml\)$/m,
    );
    // In the background, the same: the file is read again there, not turned into the flag.
    const detached = await cli(["start", "--detach", "--until-idle"]);
    assertOneLine(
      detached,
      2,
      /^bernstein: start --detach: the orchestrator exited \(code 2\): \/\S+ is not a git repository \(worktrees need one: git init, or drop `worktrees: true` from bernstein\.yaml\)$/m,
    );
    assert.deepEqual(await listRuns(ws), [], "no run started");
  } finally {
    await cleanup();
  }
});

test("git missing from PATH: task add --worktree and start --worktrees say so in one line, exit 2", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-nogit-");
  try {
    const project = path.join(dir, "repo");
    await makeRepo(project);
    const { cli } = await workspaceIn(project);
    const noGit = { PATH: path.join(dir, "empty-bin") };
    await mkdir(noGit.PATH);
    assertOneLine(
      await cli(["task", "add", "x", "--command", "true", "--worktree"], noGit),
      2,
      /git binary was not found on PATH/,
    );
    assertOneLine(
      await cli(["start", "--until-idle", "--worktrees"], noGit),
      2,
      /git binary was not found on PATH/,
    );
  } finally {
    await cleanup();
  }
});

test("start --worktrees refuses a missing target branch, a detached HEAD and a merge in progress: exit 2, no run started", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-refuse-");
  try {
    const project = path.join(dir, "repo");
    const base = await makeRepo(project, { "f.txt": "0\n" });
    const { ws, cli } = await workspaceIn(project);
    const start = (...extra: string[]) => cli(["start", "--until-idle", "--worktrees", ...extra]);
    assertOneLine(await start("--target-branch", "nope"), 2, /target branch 'nope' does not exist/);

    gitSync(project, "checkout", "--quiet", "--detach", base);
    assertOneLine(await start(), 2, /HEAD is detached/);
    gitSync(project, "checkout", "--quiet", "main");

    // A human's merge stopped on a conflict: MERGE_HEAD is theirs.
    gitSync(project, "checkout", "--quiet", "-b", "side");
    await writeFile(path.join(project, "f.txt"), "side\n");
    gitSync(project, "commit", "--quiet", "-am", "side");
    gitSync(project, "checkout", "--quiet", "main");
    await writeFile(path.join(project, "f.txt"), "main\n");
    gitSync(project, "commit", "--quiet", "-am", "main");
    assert.throws(() => gitSync(project, "merge", "--quiet", "side"));
    assertOneLine(
      await start(),
      2,
      /a merge is already in progress \(MERGE_HEAD [0-9a-f]{12}\), not started by bernstein/,
    );
    assert.ok(existsSync(path.join(project, ".git", "MERGE_HEAD")), "the human's merge is left alone");
    assert.deepEqual(await listRuns(ws), [], "no run was started");
  } finally {
    await cleanup();
  }
});

test("a branch name collision: the task fails terminally naming the branch, the existing branch untouched", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-collide-");
  try {
    const project = path.join(dir, "repo");
    await makeRepo(project);
    const { ws, cli } = await workspaceIn(project);
    gitSync(project, "branch", "bernstein/x-1");
    const before = gitSync(project, "rev-parse", "bernstein/x-1");
    await addTask(ws, { id: "x", title: "x", command: "echo x > x.txt", worktree: true });
    const r = await cli(["start", "--until-idle", "--poll", "20"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /task x failed: branch 'bernstein\/x-1' already exists/);
    assert.equal(gitSync(project, "rev-parse", "bernstein/x-1"), before);
    assert.equal(existsSync(path.join(project, "x.txt")), false, "the agent never ran");
    const failed = [];
    for (const run of await listRuns(ws))
      for await (const { entry } of readWalEntries(run.file))
        if (entry.decision_type === "task_failed" && entry.committed) failed.push(entry.output);
    assert.equal(failed.length, 1);
    assert.equal(failed[0].terminal, true);
  } finally {
    await cleanup();
  }
});
