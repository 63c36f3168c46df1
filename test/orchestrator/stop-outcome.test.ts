/**
 * `stop` says how the stop ended: an orchestrator killed while it drains is no clean stop (the
 * run is not closed, the next start recovers it), and Ctrl-C of `stop` says that the request it
 * wrote stays in force.
 */
import assert from "node:assert/strict";
import { access, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readStatusFile, stopRequestPath } from "../../src/orchestrator/control.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { readClosedMarker } from "../../src/wal/recovery.js";
import { readLock } from "../../src/workspace/lock.js";
import { spawnCli, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

/** A detached orchestrator draining a stop request of a `stop` still waiting, its agent held by `gate`. */
async function drainingOrchestrator(prefix: string) {
  const w = await orchestratorWorkspace(prefix);
  const gate = path.join(w.dir, "gate");
  await addTask(w.ws, { id: "slow", title: "slow", command: untilGate(gate) });
  const started = await w.cli("start", "--detach", "--poll", "20");
  assert.equal(started.code, 0, started.stderr);
  await waitFor("the agent running", async () => (await readAgentRecord(w.ws, "slow#1"))?.command_pgid);
  const stop = spawnCli(["--sdd", w.sdd, "stop", "--timeout", "30", "--json"], { cwd: w.dir, env: w.env });
  const status = await waitFor(
    "the orchestrator draining",
    async () => {
      const s = await readStatusFile(w.ws);
      return s?.state === "draining" ? s : undefined;
    },
    { exited: stop.done },
  );
  return { ...w, gate, stop, status };
}

test("an orchestrator killed while it drains: stop says it died, exit 1, and leaves no stop request", async () => {
  const { ws, cli, gate, stop, status, cleanup } = await drainingOrchestrator("bernstein-stop-died-");
  try {
    process.kill(status.pid, "SIGKILL");
    const r = await stop.done;
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(doc.ok, false);
    assert.equal(doc.died, true);
    assert.equal(doc.stopped, false);
    assert.equal(doc.run_id, status.run_id);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `stop: orchestrator pid ${status.pid} \\(run ${status.run_id}\\) died before it finished stopping .*the next \`bernstein start\` recovers it`,
      ),
    );
    assert.equal(await exists(stopRequestPath(ws)), false, "no stop request left for the next start");
    assert.equal(await readClosedMarker(ws, status.run_id), undefined);

    await writeFile(gate, "");
    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await taskCounts(ws)).done, 1);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});

test("Ctrl-C of stop: one line saying the stop request stays in force, and the orchestrator stops cleanly", async () => {
  const { ws, gate, stop, status, cleanup } = await drainingOrchestrator("bernstein-stop-int-");
  try {
    stop.child.kill("SIGINT");
    const r = await stop.done;
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      new RegExp(
        `^bernstein: interrupted by SIGINT; the stop request stays in force: orchestrator pid ${status.pid} goes on stopping .*\`bernstein status\` shows when it has stopped\\n$`,
      ),
    );
    assert.equal((await readLock(ws)).state, "held", "still draining: its agent runs");

    await writeFile(gate, "");
    await waitFor("the orchestrator stopped", async () => (await readLock(ws)).state !== "held");
    assert.ok(await readClosedMarker(ws, status.run_id), "the drain closed its run");
    assert.equal((await readStatusFile(ws))?.state, "stopped");
    assert.equal((await taskCounts(ws)).done, 1);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});
