/**
 * A workspace held by something other than an orchestrator (a follower's `replicate follow`):
 * `status` does not call it an orchestrator, and `stop`, which only an orchestrator would obey,
 * says what holds the workspace and exits 3 at once, leaving no stop request behind.
 */
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import os from "node:os";
import { test } from "node:test";
import { stopRequestPath } from "../../src/orchestrator/control.js";
import { acquireLock } from "../../src/workspace/lock.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("stop and status beside a follower process holding the lock: named, exit 3, no stop.json", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-other-holder-");
  // This test process holds the lock as `replicate follow` records it.
  const lock = await acquireLock(ws, "replicate follow");
  try {
    const holder = `a follower process (replicate follow, pid ${process.pid} on ${os.hostname()})`;
    const stop = await cli("stop", "--timeout", "0");
    assert.equal(stop.code, 3, stop.stderr);
    assert.equal(
      stop.stderr,
      `bernstein: stop: no orchestrator runs in .sdd: it is held by ${holder}; stop that process where it runs (Ctrl-C, or kill ${process.pid} on its host)\n`,
    );
    assert.equal(await stat(stopRequestPath(ws)).catch(() => null), null, "no stop request left behind");

    const json = await cli("status", "--json");
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as {
      orchestrator: { running: boolean; pid: number | null; state: string };
      held_by: { pid: number; command: string } | null;
    };
    assert.deepEqual(
      { running: s.orchestrator.running, pid: s.orchestrator.pid, state: s.orchestrator.state },
      { running: false, pid: null, state: "stopped" },
    );
    assert.deepEqual(s.held_by, { pid: process.pid, hostname: os.hostname(), command: "replicate follow" });
    const text = await cli("status");
    assert.match(
      text.stdout,
      new RegExp(
        `^orchestrator: not running; the workspace is held by ${holder.replace(/[()]/g, "\\$&")}$`,
        "m",
      ),
    );
  } finally {
    await lock.release();
    await cleanup();
  }
});
