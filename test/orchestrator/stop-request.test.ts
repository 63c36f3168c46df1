/**
 * A stop request reaches the orchestrator it names in time: a drain ends at its deadline however
 * long `--poll` is, and a `stop` written while a start still recovers is honoured (not erased as a
 * leftover).
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { readStatusFile, stopRequestPath, type StopRequest } from "../../src/orchestrator/control.js";
import { Orchestrator } from "../../src/orchestrator/orchestrator.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { readClosedMarker } from "../../src/wal/recovery.js";
import { readLock, type LockInfo } from "../../src/workspace/lock.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("stop --timeout 1 under --poll 600000: the drain ends at its deadline, the agent left running", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-stop-deadline-");
  const gate = path.join(dir, "gate");
  try {
    await addTask(ws, { id: "slow", title: "slow", command: `while [ ! -e ${gate} ]; do sleep 0.05; done` });
    const started = await cli("start", "--detach", "--poll", "600000");
    assert.equal(started.code, 0, started.stderr);
    const rec = await waitFor("the agent running", async () => {
      const r = await readAgentRecord(ws, "slow#1");
      return r?.command_pgid ? r : undefined;
    });
    const stopped = await cli("stop", "--timeout", "1", "--json");
    assert.equal(stopped.code, 0, stopped.stderr);
    const doc = JSON.parse(stopped.stdout) as Record<string, unknown>;
    assert.equal(doc.stopped, true);
    assert.ok(isProcessAlive(rec.command_pgid!), "the drain leaves the agent running");

    await writeFile(gate, "");
    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await taskCounts(ws)).done, 1);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});

test("a stop written after start took the lock but before its recovery cleared old requests is honoured", async () => {
  const { ws, cleanup } = await orchestratorWorkspace("bernstein-stop-recovering-");
  try {
    // A stale lock: the start takes it over with a warning, the one moment between taking the lock
    // and recovering that a test can act in. The `stop` lands there, naming the new holder.
    const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    await new Promise((resolve) => child.on("exit", resolve));
    const dead = {
      pid: child.pid,
      start_time: "1",
      hostname: os.hostname(),
      acquired_at: "2026-01-01T00:00:00Z",
    };
    await writeFile(ws.lockFile, JSON.stringify(dead));
    let holder: LockInfo | undefined;
    const orch = await Orchestrator.open(ws, {
      warn: () => {
        if (holder) return;
        holder = JSON.parse(readFileSync(ws.lockFile, "utf8")) as LockInfo;
        const req: StopRequest = {
          mode: "drain",
          timeout_s: 0,
          requested_at: new Date().toISOString(),
          requested_by_pid: process.pid,
          holder,
        };
        mkdirSync(path.dirname(stopRequestPath(ws)), { recursive: true });
        writeFileSync(stopRequestPath(ws), JSON.stringify(req) + "\n");
      },
    });
    assert.equal(holder?.pid, process.pid);
    const ran = orch.run();
    const ended = await waitFor(
      "the run to end",
      async () => {
        if ((await readLock(ws)).state === "held") return undefined;
        return (await readStatusFile(ws))?.state === "stopped";
      },
      { ms: 20_000 },
    ).catch(async (err: Error) => {
      // An erased request leaves the run going: end it so the test process can exit.
      writeFileSync(stopRequestPath(ws), JSON.stringify({ mode: "force", timeout_s: 0 }) + "\n");
      await ran;
      throw err;
    });
    assert.equal(ended, true);
    const result = await ran;
    assert.equal(result.reason, "stopped");
    assert.ok(await readClosedMarker(ws, orch.runId));
  } finally {
    await cleanup();
  }
});
