/**
 * `status` after an orchestrator died: of the agents recorded but not running, those whose wrapper
 * wrote a completion record are collected by the next start (their outcome is known), and only
 * the others are re-queued. It says which are which.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listCompletions, readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { runCli, spawnCli, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

interface StatusDoc {
  agents_running: number;
  agents_recorded: number;
  agents: { agent_id: string; running: boolean; finished: boolean }[];
}

const IDS = ["a", "b", "c"];

test("status: agents that finished while the orchestrator was down are to be collected, not re-queued", async () => {
  const { dir, sdd, env, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-status-finished-");
  const gate = path.join(dir, "gate");
  try {
    for (const id of IDS) await addTask(ws, { id, title: id, command: untilGate(gate) });
    const orch = spawnCli(["--sdd", sdd, "start", "--max-agents", "3", "--poll", "20"], { cwd: dir, env });
    for (const id of IDS)
      await waitFor(`agent ${id} running`, async () => (await readAgentRecord(ws, `${id}#1`))?.command_pgid, {
        exited: orch.done,
      });
    orch.child.kill("SIGKILL");
    await orch.done;
    await writeFile(gate, "");
    await waitFor("every agent's completion record", async () => (await listCompletions(ws)).length === 3);

    const json = await cli("status", "--json");
    assert.equal(json.code, 0, json.stderr);
    const st = JSON.parse(json.stdout) as StatusDoc;
    assert.equal(st.agents_running, 0);
    assert.equal(st.agents_recorded, 3);
    assert.deepEqual(
      st.agents.map((a) => [a.agent_id, a.running, a.finished]),
      IDS.map((id) => [`${id}#1`, false, true]),
    );
    const human = await cli("status");
    assert.match(
      human.stdout,
      /^agents running: 0; recorded, not running: 3 \(3 finished: the next start collects their outcome\)$/m,
    );
    assert.doesNotMatch(human.stdout, /re-queue/);

    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /3 completion record\(s\) collected/);
    assert.equal((await taskCounts(ws)).done, 3);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});

test("status after a crash between a completion's rename and its commit: the task is to be collected", async () => {
  const { dir, sdd, env, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-status-after-action-");
  try {
    await addTask(ws, { id: "t", title: "t", command: "true" });
    const crashed = await runCli(["--sdd", sdd, "start", "--until-idle", "--poll", "20"], {
      cwd: dir,
      env: { ...env, BERNSTEIN_CRASH_AT: "task_completed:after_action" },
    });
    assert.equal(crashed.signal, "SIGKILL", crashed.stderr);
    assert.equal((await taskCounts(ws)).done, 1, "the file is in done/ already");

    const human = await cli("status");
    assert.match(
      human.stdout,
      /^agents running: 0; recorded, not running: 1 \(1 finished: the next start collects their outcome\)$/m,
    );
    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await taskCounts(ws)).done, 1);
    assert.equal((JSON.parse((await cli("status", "--json")).stdout) as StatusDoc).agents_recorded, 0);
  } finally {
    await cleanup();
  }
});
