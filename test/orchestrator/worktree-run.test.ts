import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { collectStatus } from "../../src/orchestrator/status.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir, waitFor, withSeed } from "../helpers.js";
import { gitSync, makeRepo, MERGE_CRASH_POINTS, mergeCommitsOf } from "./support/git-repo.js";

/**
 * `start` with worktrees, end to end: a real repository, real agents (shell tasks run by the
 * wrapper), merges into `main`. The workspace lives in the repository (`.sdd/`, ignored) and the
 * CLI's state folder outside it, so the main worktree is clean unless a test dirties it.
 */
async function repoWorkspace(files: Record<string, string>) {
  const s = await scratchDir("bernstein-wt-run-");
  const repo = path.join(s.dir, "repo");
  await makeRepo(repo, files);
  const sdd = path.join(repo, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (args: string[], extraEnv: Record<string, string> = {}) =>
    runCli(["--sdd", sdd, ...args], { cwd: repo, env: { ...env, ...extraEnv } });
  return { ...s, repo, sdd, ws: workspace, cli };
}

async function committedEntries(ws: Workspace, type: string) {
  const out = [];
  for (const run of await listRuns(ws))
    for await (const { entry } of readWalEntries(run.file))
      if (entry.decision_type === type && entry.committed) out.push(entry);
  return out;
}

const START = ["start", "--until-idle", "--poll", "20", "--json"];

test("worktree tasks touching different files each merge once into main; worktrees and branches removed", async () => {
  const { repo, ws, cli, cleanup } = await repoWorkspace({ "README.md": "hello\n" });
  try {
    for (const id of ["a", "b", "c"])
      await addTask(ws, { id, title: `write ${id}`, command: `echo ${id} > ${id}.txt`, worktree: true });
    const r = await cli([...START, "--max-agents", "2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).counts.done, 3);
    for (const id of ["a", "b", "c"]) {
      assert.equal(mergeCommitsOf(repo, "main", `${id}#1`).length, 1, `one merge commit for ${id}`);
      assert.equal(await readFile(path.join(repo, `${id}.txt`), "utf8"), `${id}\n`);
      assert.match(
        gitSync(repo, "log", "--format=%s", "-1", `main^{/^task ${id}:}`),
        new RegExp(`^task ${id}: write ${id}$`),
      );
    }
    const merged = await committedEntries(ws, "task_merged");
    assert.deepEqual(merged.map((e) => e.inputs.task_id).sort(), ["a", "b", "c"]);
    assert.ok(merged.every((e) => typeof e.output.merge_commit === "string"));
    assert.deepEqual(await readdir(path.join(ws.root, "worktrees")).catch(() => []), []);
    assert.equal(gitSync(repo, "branch", "--list", "bernstein/*"), "");
    assert.equal(gitSync(repo, "status", "--porcelain"), "");
  } finally {
    await cleanup();
  }
});

/** Two tasks spawned from the same base commit, both rewriting the same line of shared.txt. */
async function conflictingPair(onConflict: "requeue" | "hold") {
  const w = await repoWorkspace({ "shared.txt": "0\n" });
  for (const id of ["x", "y"])
    await addTask(w.ws, {
      id,
      title: `rewrite as ${id}`,
      command: `echo ${id} > shared.txt`,
      worktree: true,
    });
  // Two agents: both are claimed in the same pass, from the same base, before either merges.
  const r = await w.cli([...START, "--max-agents", "2", "--retry-backoff", "1", "--on-conflict", onConflict]);
  const failed = (await committedEntries(w.ws, "task_failed")).filter(
    (e) => e.output.reason === "merge_conflict",
  );
  return { ...w, r, failed };
}

test("two tasks on the same lines, --on-conflict hold: one merges, the other fails merge_conflict with its branch kept", async () => {
  const { repo, ws, r, failed, cleanup } = await conflictingPair("hold");
  try {
    assert.equal(r.code, 1, "a task failed terminally");
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.counts.done, 1);
    assert.equal(doc.counts.failed, 1);
    assert.equal(failed.length, 1);
    const loser = String(failed[0].inputs.task_id);
    const winner = loser === "x" ? "y" : "x";
    assert.deepEqual(failed[0].output.paths, ["shared.txt"]);
    assert.equal(failed[0].output.terminal, true);
    assert.equal(mergeCommitsOf(repo, "main", `${winner}#1`).length, 1);
    assert.equal(await readFile(path.join(repo, "shared.txt"), "utf8"), `${winner}\n`);
    assert.equal(gitSync(repo, "branch", "--list", `bernstein/${loser}-1`).trim(), `bernstein/${loser}-1`);
    assert.equal(
      gitSync(repo, "status", "--porcelain"),
      "",
      "the main worktree is as before the refused merge",
    );
    assert.ok(existsSync(path.join(ws.backlogDir("failed"), `${loser}.md`)));
  } finally {
    await cleanup();
  }
});

test("two tasks on the same lines, --on-conflict requeue: the loser runs again from the new target and merges", async () => {
  const { repo, r, failed, cleanup } = await conflictingPair("requeue");
  try {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).counts.done, 2);
    assert.equal(failed.length, 1);
    const loser = String(failed[0].inputs.task_id);
    assert.equal(failed[0].output.terminal, false);
    assert.equal(mergeCommitsOf(repo, "main", `${loser}#1`).length, 0);
    assert.equal(mergeCommitsOf(repo, "main", `${loser}#2`).length, 1, "attempt 2 merged");
    assert.equal(await readFile(path.join(repo, "shared.txt"), "utf8"), `${loser}\n`);
    assert.equal(gitSync(repo, "branch", "--list", `bernstein/${loser}-1`).trim(), `bernstein/${loser}-1`);
  } finally {
    await cleanup();
  }
});

test("SIGKILL of start during a merge, then start again: exactly one merge commit per task attempt", () =>
  withSeed("BERNSTEIN_TEST_SEED", async (rand, seed) => {
    const { repo, ws, cli, cleanup } = await repoWorkspace({ "README.md": "hello\n" });
    try {
      const points = [...MERGE_CRASH_POINTS].sort(() => rand() - 0.5);
      for (const [i, point] of points.entries()) {
        const id = `k${i}`;
        const why = `seed ${seed}, point ${point} (task ${id})`;
        await addTask(ws, { id, title: id, command: `echo ${id} > ${id}.txt`, worktree: true });
        const crashed = await cli([...START, "--max-agents", "1"], { BERNSTEIN_CRASH_AT: point });
        assert.equal(crashed.signal, "SIGKILL", `${why}: not killed: ${crashed.stderr}`);
        const again = await cli([...START, "--max-agents", "1"]);
        assert.equal(again.code, 0, `${why}: ${again.stderr}`);
        assert.equal(mergeCommitsOf(repo, "main", `${id}#1`).length, 1, why);
        assert.equal(await readFile(path.join(repo, `${id}.txt`), "utf8"), `${id}\n`, why);
        assert.equal(gitSync(repo, "status", "--porcelain"), "", why);
        assert.equal(existsSync(path.join(ws.root, "worktrees", `${id}-1`)), false, `${why}: worktree left`);
        assert.equal(gitSync(repo, "branch", "--list", `bernstein/${id}-1`), "", `${why}: branch left`);
      }
      const merged = await committedEntries(ws, "task_merged");
      const byAttempt = new Map<string, Set<string>>();
      for (const e of merged) {
        const k = `${String(e.inputs.task_id)}#${String(e.inputs.attempt)}`;
        byAttempt.set(k, (byAttempt.get(k) ?? new Set()).add(String(e.output.merge_commit)));
      }
      assert.equal(byAttempt.size, MERGE_CRASH_POINTS.length, `seed ${seed}`);
      for (const [k, commits] of byAttempt) assert.equal(commits.size, 1, `seed ${seed}: ${k}`);
    } finally {
      await cleanup();
    }
  }));

test("a dirty main worktree, then another branch checked out: the merge waits and status says why; back on the target, it merges and status shows the merge commit", async () => {
  const { repo, ws, cli, cleanup } = await repoWorkspace({ "README.md": "hello\n" });
  try {
    gitSync(repo, "checkout", "--quiet", "-b", "feature");
    await writeFile(path.join(repo, "human.txt"), "work in progress\n");
    await addTask(ws, { id: "t", title: "t", command: "echo t > t.txt", worktree: true });
    const started = await cli([
      "start",
      "--detach",
      "--until-idle",
      "--poll",
      "20",
      "--target-branch",
      "main",
      "--json",
    ]);
    assert.equal(started.code, 0, started.stderr);
    const status = async () => {
      const r = await cli(["status", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    // Waits poll the status in-process (a `status` child per poll would take the cores the
    // orchestrator needs); the CLI's own status is checked once each wait is over.
    const waiting = (s: { merges: { waiting: { why: string }[] } }) => s.merges.waiting[0]?.why ?? "";
    const untilWaiting = async (re: RegExp) => {
      await waitFor(`a merge waiting: ${re.source}`, async () => re.test(waiting(await collectStatus(ws))));
      assert.match(waiting(await status()), re);
    };
    await untilWaiting(/uncommitted changes \(human\.txt\)/);
    const human = await cli(["status"]);
    assert.match(
      human.stdout,
      /waiting to merge: task t \(attempt 1, bernstein\/t-1 into main\): the main worktree has uncommitted changes/,
    );
    gitSync(repo, "add", "human.txt");
    gitSync(repo, "commit", "--quiet", "-m", "human");
    await untilWaiting(/has 'feature' checked out, not the target branch 'main'/);
    assert.equal(mergeCommitsOf(repo, "main", "t#1").length, 0, "nothing merged over a human's work");
    gitSync(repo, "checkout", "--quiet", "main");
    await waitFor("merged", async () => (await collectStatus(ws)).merges.merged.length === 1);
    const s = await status();
    assert.deepEqual(s.merges.waiting, []);
    assert.deepEqual(s.merges.merged, [
      { task_id: "t", attempt: 1, merge_commit: mergeCommitsOf(repo, "main", "t#1")[0] },
    ]);
    await waitFor("idle", async () => !(await collectStatus(ws)).orchestrator.running);
    assert.match((await cli(["status"])).stdout, /merged: 1 task\(s\): t [0-9a-f]{12}/);
  } finally {
    await cleanup();
  }
});

test("worktrees: true and merge.on_conflict in the configuration file: a task added without --worktree merges; config show names the keys", async () => {
  const { dir, repo, ws, cli, cleanup } = await repoWorkspace({ "README.md": "hello\n" });
  try {
    const config = path.join(dir, "bernstein.yaml");
    await writeFile(config, "worktrees: true\nmerge:\n  on_conflict: hold\n");
    const shown = await cli(["--config", config, "config", "show", "--json"]);
    assert.equal(shown.code, 0, shown.stderr);
    const rows = JSON.parse(shown.stdout).settings as { key: string; value: unknown; source: string }[];
    assert.deepEqual(
      rows.find((r) => r.key === "worktrees"),
      { key: "worktrees", value: true, source: "file" },
    );
    assert.deepEqual(
      rows.find((r) => r.key === "merge.on_conflict"),
      {
        key: "merge.on_conflict",
        value: "hold",
        source: "file",
      },
    );
    await addTask(ws, { id: "plain", title: "plain", command: "echo p > p.txt" });
    const r = await cli(["--config", config, ...START]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mergeCommitsOf(repo, "main", "plain#1").length, 1);
  } finally {
    await cleanup();
  }
});
