/**
 * A stop request reaches the orchestrator it names and is answered truthfully: a drain ends at its
 * deadline however long `--poll` is, a `stop --force` that came after the orchestrator had ended
 * its drain says the agents were not killed, and a `stop` written while a start still recovers is
 * honoured (not erased as a leftover).
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { access, writeFile } from "node:fs/promises";
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
import { spawnCli, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

test("stop --timeout 1 under --poll 600000: the drain ends at its deadline, the agent left running", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-stop-deadline-");
  const gate = path.join(dir, "gate");
  try {
    await addTask(ws, { id: "slow", title: "slow", command: untilGate(gate) });
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
    assert.equal(doc.ended, "stopped");
    assert.equal(doc.left_running, 1);
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

test("stop --force that an orchestrator ending its drain never read: exit 1, it says the agents were not killed", async () => {
  const { dir, sdd, ws, env, cleanup } = await orchestratorWorkspace("bernstein-stop-force-late-");
  // An orchestrator whose drain ends just as the force request lands: it holds the lock, and once
  // the request is there it stops as a drain does (one agent left running) without reading it.
  const script = path.join(dir, "late.mjs");
  const dist = (p: string) => JSON.stringify(new URL(`../../src/${p}`, import.meta.url).href);
  await writeFile(
    script,
    `import { existsSync } from "node:fs";
const { acquireLock } = await import(${dist("workspace/lock.js")});
const { openWorkspace } = await import(${dist("workspace/layout.js")});
const { writeStatusFile, stopRequestPath } = await import(${dist("orchestrator/control.js")});
const ws = await openWorkspace(${JSON.stringify(sdd)});
const lock = await acquireLock(ws, "bernstein start");
const s = { pid: process.pid, run_id: "run-late", state: "draining", started_at: "", updated_at: "", max_agents: 1 };
await writeStatusFile(ws, s);
console.log("ready");
while (!existsSync(stopRequestPath(ws))) await new Promise((r) => setTimeout(r, 10));
await writeStatusFile(ws, { ...s, state: "stopped", exit_code: 0, ended: "stopped", left_running: 1 });
await lock.release();
`,
  );
  const late = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      late.stdout.once("data", () => resolve());
      late.once("exit", (code) => reject(new Error(`the orchestrator stand-in exited (${code})`)));
    });
    const r = await spawnCli(["--sdd", sdd, "stop", "--force", "--json"], { cwd: dir, env }).done;
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(doc.ok, false);
    assert.equal(doc.stopped, true);
    assert.equal(doc.forced, false);
    assert.equal(doc.left_running, 1);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^bernstein: stop: orchestrator pid ${late.pid} \\(run run-late\\) stopped before it read the force request \\(its drain ended first\\) and left 1 agent\\(s\\) running, not killed`,
      ),
    );
    assert.equal(await exists(stopRequestPath(ws)), false, "the unread request is withdrawn");
  } finally {
    if (late.exitCode === null) late.kill("SIGKILL");
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
