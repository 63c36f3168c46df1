/**
 * `start` with flags left out runs with its documented defaults (docs/orchestrator.md): at most 4
 * agents at once, retries 1 s then 2 s apart, a checkpoint every 100 decisions, every 60 s; and
 * the other commands' defaults (stop's 60 s drain, task add's fields, checkpoint's retention).
 * Observed through behaviour (concurrent commands, WAL timestamps as lower bounds, checkpoint
 * files), never through how long a run took.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { requestSnapshot } from "../../src/dr/snapshot.js";
import { listCheckpointFiles, writeCheckpoint } from "../../src/checkpoint/checkpoint.js";
import { loadState } from "../../src/checkpoint/load-state.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { runCli, type CliResult, waitFor, CLI_ARGV, cliEnv } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const count = (dir: string) => readdir(dir).then((n) => n.filter((x) => !x.startsWith(".")).length);

for (const mode of ["foreground", "--detach"] as const) {
  test(`start (${mode}) with no flags runs at most the default of 4 agents at once`, async () => {
    const { dir, sdd, ws, env, cleanup } = await orchestratorWorkspace("bernstein-defaults-agents-");
    let finished: Promise<CliResult> | undefined;
    try {
      const running = path.join(dir, "running");
      const release = path.join(dir, "release");
      await mkdir(running);
      for (let i = 0; i < 10; i++) {
        const id = `c${i}`;
        // Each command shows it runs (a folder of its own), then holds until the test releases it.
        await addTask(ws, {
          id,
          title: id,
          command: `mkdir ${running}/${id} && while [ ! -e ${release} ]; do sleep 0.05; done`,
        });
      }
      if (mode === "foreground") {
        const c = spawn(process.execPath, [...CLI_ARGV, "--sdd", sdd, "start", "--until-idle", "--json"], {
          cwd: dir,
          env: cliEnv(env),
          stdio: ["ignore", "pipe", "pipe"],
        });
        finished = new Promise((resolve) => {
          let stdout = "";
          let stderr = "";
          c.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
          c.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
          c.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
        });
      } else {
        const r = await runCli(["--sdd", sdd, "start", "--detach", "--until-idle", "--json"], {
          cwd: dir,
          env,
        });
        assert.equal(r.code, 0, r.stderr);
        finished = waitFor("the detached orchestrator to stop", async () => {
          const st = await readFile(path.join(sdd, "runtime", "orchestrator.json"), "utf8").then(
            (t) => JSON.parse(t) as { state: string; exit_code?: number },
            () => undefined,
          );
          return st?.state === "stopped"
            ? { code: st.exit_code ?? null, signal: null, stdout: "", stderr: "" }
            : undefined;
        });
      }
      await waitFor("4 commands to run", async () => (await count(running)) >= 4);
      // A DR pause is acknowledged only between scheduling passes: once it is, the pass that
      // claimed these tasks is over, and no command can finish before the release.
      const pause = await requestSnapshot(ws, { ackTimeoutMs: 120_000 });
      try {
        assert.equal(pause.method, "paused", pause.warning);
        assert.equal(await count(ws.backlogDir("claimed")), 4, "tasks claimed at once");
        assert.equal(await count(running), 4, "commands running at once");
      } finally {
        await pause.release();
      }
      await writeFile(release, "");
      const r = await finished;
      finished = undefined;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await count(running), 10, "every command ran");
      assert.equal(await count(ws.backlogDir("done")), 10);
    } finally {
      // On a failed assertion: let every command finish before the folder goes.
      await writeFile(path.join(dir, "release"), "").catch(() => {});
      await finished?.catch(() => {});
      await cleanup();
    }
  });
}

/** Committed and intent entries of every run, in order. */
async function walEntries(ws: Workspace) {
  const all = [];
  for (const run of await listRuns(ws))
    for await (const { entry } of readWalEntries(run.file)) all.push(entry);
  return all;
}

test("start with no flags waits the default retry backoff: 1 s, then 2 s", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-backoff-");
  try {
    await addTask(ws, { id: "flaky", title: "flaky", command: "exit 3", maxRetries: 2 });
    const r = await cli("start", "--until-idle", "--json");
    assert.equal(r.code, 1, r.stderr);
    const entries = await walEntries(ws);
    const retryCommitted = (attempt: number) =>
      entries.find((e) => e.decision_type === "task_retry" && e.committed && e.inputs.attempt === attempt)!;
    const claimIntent = (attempt: number) =>
      entries.find(
        (e) => e.decision_type === "task_claimed" && !e.committed && e.inputs.attempt === attempt,
      )!;
    // Lower bounds only: a loaded machine makes the gaps longer, never shorter.
    const gap2 = claimIntent(2).timestamp - retryCommitted(2).timestamp;
    const gap3 = claimIntent(3).timestamp - retryCommitted(3).timestamp;
    assert.ok(gap2 >= 0.99, `second attempt claimed ${gap2.toFixed(3)} s after its retry (backoff 1 s)`);
    assert.ok(gap3 >= 1.99, `third attempt claimed ${gap3.toFixed(3)} s after its retry (backoff 2 s)`);
  } finally {
    await cleanup();
  }
});

const DEFAULT_OPTIONS = {
  max_agents: 4,
  checkpoint_every: 100,
  checkpoint_interval_s: 60,
  retry_backoff_ms: 1000,
  poll_ms: 250,
};

test("start with no flags checkpoints every 100 decisions (and at the stop); its --json reports the documented default options", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-checkpoint-");
  try {
    // 30 tasks: 120 state-changing decisions (created, claimed, spawned, completed each).
    for (let i = 0; i < 30; i++)
      await addTask(ws, { id: `t${String(i).padStart(2, "0")}`, title: "t", command: "true" });
    const r = await cli("start", "--until-idle", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).decisions, 120);
    assert.deepEqual(JSON.parse(r.stdout).options, DEFAULT_OPTIONS);
    assert.ok(
      (await listCheckpointFiles(ws)).length >= 2,
      "one checkpoint after 100 decisions, one at the stop",
    );
  } finally {
    await cleanup();
  }
});

// The defaults a run without flags reports are checked on the checkpoint test's run above.
test("start --json reports the options it ran with: the defaults for those no flag gives", async () => {
  const { cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-report-");
  try {
    const flagged = await cli(
      "start",
      "--until-idle",
      "--json",
      "--max-agents",
      "2",
      "--checkpoint-interval",
      "0",
    );
    assert.equal(flagged.code, 0, flagged.stderr);
    assert.deepEqual(JSON.parse(flagged.stdout).options, {
      ...DEFAULT_OPTIONS,
      max_agents: 2,
      checkpoint_interval_s: 0,
    });
  } finally {
    await cleanup();
  }
});

test("stop with no flags asks for the default drain of 60 s", async () => {
  const { dir, sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-stop-");
  const release = path.join(dir, "release");
  try {
    await addTask(ws, {
      id: "hold",
      title: "hold",
      command: `touch ${dir}/running; while [ ! -e ${release} ]; do sleep 0.05; done`,
    });
    const started = await cli("start", "--detach", "--json");
    assert.equal(started.code, 0, started.stderr);
    await waitFor("the command to run", () =>
      readFile(path.join(dir, "running")).then(
        () => true,
        () => false,
      ),
    );
    const stopping = cli("stop", "--json");
    const request = await waitFor("the stop request", () =>
      readFile(path.join(sdd, "runtime", "signals", "stop.json"), "utf8").then(
        (t) => JSON.parse(t) as { mode: string; timeout_s: number },
        () => undefined,
      ),
    );
    assert.deepEqual([request.mode, request.timeout_s], ["drain", 60]);
    await writeFile(release, "");
    const stopped = await stopping;
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(await count(ws.backlogDir("done")), 1, "the drain waited for the running agent");
  } finally {
    await writeFile(release, "").catch(() => {});
    await cleanup();
  }
});

test("task add with no optional flags writes the documented defaults", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-task-");
  try {
    const r = await cli("task", "add", "defaults", "--command", "true", "--id", "d1");
    assert.equal(r.code, 0, r.stderr);
    const text = await readFile(path.join(ws.backlogDir("open"), "d1.md"), "utf8");
    for (const line of ["role: backend", "priority: 2", "agent: shell", "max_retries: 0", "timeout_s: 1800"])
      assert.match(text, new RegExp(`^${line}$`, "m"), text);
  } finally {
    await cleanup();
  }
});

test("checkpoint with no --retain keeps the newest 20", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-defaults-retain-");
  try {
    const { state } = await loadState(ws);
    for (let i = 0; i < 22; i++)
      await writeCheckpoint(ws, state, { retain: 100, now: new Date(Date.UTC(2026, 0, 1, 0, i)) });
    assert.equal((await listCheckpointFiles(ws)).length, 22);
    const r = await cli("checkpoint", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await listCheckpointFiles(ws)).length, 20);
  } finally {
    await cleanup();
  }
});
