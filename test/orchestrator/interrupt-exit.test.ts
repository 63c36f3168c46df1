/**
 * Ctrl-C / SIGTERM of a foreground `start` drains like `bernstein stop --timeout 0`, then exits
 * 130/143 as an interrupted command does; `bernstein stop` of a detached orchestrator is no
 * interruption: it ends with 0.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, existsSync, openSync, writeSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readStatusFile } from "../../src/orchestrator/control.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns } from "../../src/wal/reader.js";
import { closedMarkerPath } from "../../src/wal/recovery.js";
import { readLock } from "../../src/workspace/lock.js";
import { spawnCli, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} on start --until-idle drains, then exits ${code} with ok:false`, async () => {
    const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-interrupt-");
    const gate = path.join(dir, "gate");
    try {
      await addTask(ws, {
        id: "slow",
        title: "slow",
        command: untilGate(gate),
      });
      const run = spawnCli(["--sdd", sdd, "--json", "start", "--until-idle", "--poll", "20"], {
        cwd: dir,
        env,
      });
      await waitFor("the task claimed", async () => (await taskCounts(ws)).claimed === 1, {
        exited: run.done,
      });
      run.child.kill(signal);
      const r = await run.done;
      assert.equal(r.code, code, r.stderr);
      const doc = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(doc.ok, false);
      assert.equal(doc.exit_code, code);
      assert.equal(doc.reason, "interrupted");
      assert.equal(doc.interrupted_by, signal);
      assert.equal((await readStatusFile(ws))?.exit_code, code);

      // The agent kept running; the next start re-attaches it and finishes the task.
      await writeFile(gate, "");
      const again = await cli("start", "--until-idle", "--poll", "20");
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await taskCounts(ws)).done, 1);
    } finally {
      await writeFile(gate, "").catch(() => {});
      await cleanup();
    }
  });
}

test("SIGINT on start: the human output says it was interrupted", async () => {
  const { dir, sdd, env, cleanup } = await orchestratorWorkspace("bernstein-interrupt-");
  try {
    const run = spawnCli(["--sdd", sdd, "start", "--poll", "20"], { cwd: dir, env });
    // The replay line is printed in the same turn as the signal handlers are installed.
    let stdout = "";
    run.child.stdout!.on("data", (d: string) => (stdout += d));
    await waitFor("the replay line", () => stdout.includes("replay:"), { exited: run.done });
    run.child.kill("SIGINT");
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stdout, /run run-\S+ interrupted by SIGINT: /);
  } finally {
    await cleanup();
  }
});

test("bernstein stop of a detached orchestrator is not an interruption: it ends with 0", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-interrupt-");
  try {
    const started = await cli("start", "--detach", "--poll", "20");
    assert.equal(started.code, 0, started.stderr);
    const stopped = await cli("stop", "--json");
    assert.equal(stopped.code, 0, stopped.stderr);
    const s = await readStatusFile(ws);
    assert.equal(s?.state, "stopped");
    assert.equal(s?.exit_code, 0);
  } finally {
    await cleanup();
  }
});

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} during start's recovery ends it cleanly: ${code}, lock released, run closed, nothing claimed`, async () => {
    const { sdd, ws, env, cleanup } = await orchestratorWorkspace("bernstein-interrupt-recovery-");
    try {
      await addTask(ws, { id: "t", title: "t", command: "true" });
      // Recovery reads agents.yaml after taking the lock: as a FIFO, the read waits for a writer,
      // holding the start in its recovery for as long as the test needs.
      const agents = path.join(sdd, "config", "agents.yaml");
      const text = "default: shell\n";
      execFileSync("mkfifo", [agents]);
      const run = spawnCli(["--sdd", sdd, "--json", "start", "--until-idle", "--poll", "20"], { env });
      await waitFor("the lock taken", async () => (await readLock(ws)).state === "held", {
        exited: run.done,
      });
      run.child.kill(signal);
      // The reader is waiting in its open(): a writer's non-blocking open finds it, unless the
      // signal killed the process.
      const fd = await waitFor(
        "the recovery still waiting for agents.yaml",
        () => {
          try {
            return openSync(agents, constants.O_WRONLY | constants.O_NONBLOCK);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENXIO") return undefined;
            throw err;
          }
        },
        { exited: run.done },
      );
      writeSync(fd, text);
      closeSync(fd);
      const r = await run.done;
      assert.equal(r.code, code, r.stderr);
      const doc = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(doc.interrupted_by, signal);
      assert.equal(doc.reason, "interrupted");
      assert.equal((await readLock(ws)).state, "free", "lock released");
      assert.equal((await readStatusFile(ws))?.state, "stopped");
      const runs = await listRuns(ws);
      assert.equal(runs.length, 1);
      assert.ok(existsSync(closedMarkerPath(ws, runs[0]!.run_id)), "the run is closed");
      assert.equal((await taskCounts(ws)).open, 1, "nothing claimed after the signal");
    } finally {
      await cleanup();
    }
  });
}
