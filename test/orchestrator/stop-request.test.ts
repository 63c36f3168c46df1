/** A stop request is answered in time: a drain ends at its deadline however long `--poll` is. */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
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
