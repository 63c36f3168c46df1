/**
 * A failed `start --detach` quotes only what its background process wrote.
 * `stop --timeout 0` drains without waiting for the agents, as Ctrl-C of a foreground start does.
 */
import assert from "node:assert/strict";
import { chmod, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("a failed start --detach quotes only its own child's lines, not earlier runs' lines in the log", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-detach-log-");
  try {
    const log = path.join(ws.logsDir, "orchestrator.log");
    await writeFile(log, "warning: task F cannot run: dependency E is blocked\nrun run-x stopped: earlier\n");
    const key = path.join(dir, "k");
    await writeFile(key, "0123456789abcdef0123456789abcdef");
    await chmod(key, 0o644);
    for (let i = 0; i < 2; i++) {
      const r = await cli("start", "--detach", "--key-file", key);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.split("\n").filter(Boolean);
      assert.equal(lines.length, 1, r.stderr);
      assert.doesNotMatch(lines[0]!, /dependency E|run-x| \| /, "nothing from earlier runs");
      assert.equal(lines[0]!.match(/is readable by group or others/g)?.length, 1, r.stderr);
    }
    // The log itself stays append-only: the earlier lines and both children's lines are all there.
    const text = await readFile(log, "utf8");
    assert.match(text, /^warning: task F cannot run/);
    assert.equal(text.match(/is readable by group or others/g)?.length, 2);
  } finally {
    await cleanup();
  }
});

test("stop --timeout 0 drains without waiting for the agents; they keep running and the next start finishes them", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-stop0-");
  const gate = path.join(dir, "gate");
  try {
    await addTask(ws, {
      id: "slow",
      title: "slow",
      command: `while [ ! -e ${gate} ]; do sleep 0.05; done`,
    });
    const started = await cli("start", "--detach", "--poll", "20");
    assert.equal(started.code, 0, started.stderr);
    const rec = await waitFor("the agent running", async () => {
      const r = await readAgentRecord(ws, "slow#1");
      return r?.command_pgid ? r : undefined;
    });
    const stopped = await cli("stop", "--timeout", "0", "--json");
    assert.equal(stopped.code, 0, stopped.stderr);
    const doc = JSON.parse(stopped.stdout) as Record<string, unknown>;
    assert.equal(doc.stopped, true);
    assert.equal(doc.mode, "drain");
    assert.ok(isProcessAlive(rec.command_pgid!), "the agent was left running");
    assert.equal((await taskCounts(ws)).claimed, 1);

    await writeFile(gate, "");
    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await taskCounts(ws)).done, 1);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});
