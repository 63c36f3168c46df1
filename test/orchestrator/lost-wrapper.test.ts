/**
 * An agent's wrapper killed alone (its command runs on): the task is re-queued only after the
 * command's process group is killed, so no task runs twice at once. Time-based work (a checkpoint
 * by interval, the liveness of a re-attached agent) does not wait for a long --poll, and a
 * SIGTERM holds from the moment it comes: no attempt is claimed after it.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { listCheckpointFiles } from "../../src/checkpoint/checkpoint.js";
import { readStatusFile } from "../../src/orchestrator/control.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord, type AgentRecord } from "../../src/orchestrator/wrapper.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { killProcessGroup } from "../../src/workspace/process.js";
import { spawnCli, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const HUGE_POLL = "3000000000";

/** Process groups of the live (not zombie) processes started for task `taskId` of the workspace in `dir`. */
function commandsOf(dir: string, taskId: string): number[] {
  const mine = `XDG_STATE_HOME=${path.join(dir, "state")}`;
  const pids: number[] = [];
  for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const env = readFileSync(`/proc/${name}/environ`, "utf8").split("\0");
      if (!env.includes(mine) || !env.includes(`BERNSTEIN_TASK_ID=${taskId}`)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state !== "Z" && !pids.includes(Number(pgrp))) pids.push(Number(pgrp));
    } catch {
      // gone while we looked, or not ours to read
    }
  }
  return pids;
}

/** The attempt's token once its command's group is recorded. */
function commandRecorded(ws: Workspace, agentId: string): Promise<AgentRecord> {
  return waitFor(`${agentId}'s command`, async () => {
    const r = await readAgentRecord(ws, agentId);
    return r?.command_pgid ? r : undefined;
  });
}

/**
 * A workspace whose task `s` (sleep 600) runs under a wrapper an earlier orchestrator spawned,
 * and a second orchestrator started with `args` that has re-attached it (no child of its own).
 */
async function reattached(args: string[]) {
  const w = await orchestratorWorkspace("bernstein-lost-wrapper-");
  await addTask(w.ws, { id: "s", title: "s", command: "sleep 600" });
  const first = spawnCli(["--sdd", w.sdd, "start", "--poll", "20"], { cwd: w.dir, env: w.env });
  const record = await commandRecorded(w.ws, "s#1");
  const stop = await w.cli("stop", "--timeout", "0");
  assert.equal(stop.code, 0, stop.stderr);
  await first.done;
  const checkpoints = (await listCheckpointFiles(w.ws)).length;
  // --checkpoint-every 1: the pass that adopts a new task (after it checked the agents) ends with
  // a checkpoint, so a kill after that comes while the loop sleeps.
  const run = spawnCli(["--sdd", w.sdd, "start", "--checkpoint-every", "1", ...args], {
    cwd: w.dir,
    env: w.env,
  });
  let stdout = "";
  run.child.stdout!.on("data", (d: string) => (stdout += d));
  await waitFor("the replay line", () => stdout.includes("replay:"), { exited: run.done });
  await addTask(w.ws, { id: "later", title: "later", command: "true", dependsOn: ["s"] });
  let output = "";
  run.child.stderr!.on("data", (d: string) => (output += d));
  await waitFor(
    "the pass that adopted the new task",
    async () => (await listCheckpointFiles(w.ws)).length > checkpoints,
    { exited: run.done },
  );
  const cleanup = async () => {
    run.child.kill("SIGKILL");
    await run.done;
    for (const pgid of commandsOf(w.dir, "s")) killProcessGroup(pgid, "SIGKILL");
    await w.cleanup();
  };
  return { ...w, record, run, output: () => output, cleanup };
}

test("a wrapper killed alone: its command is killed before the task is re-queued, so one command runs", async () => {
  const { ws, dir, record, run, output, cleanup } = await reattached(["--poll", "20"]);
  try {
    process.kill(record.pid, "SIGKILL");
    const second = await waitFor("the second attempt's command", () => commandRecorded(ws, "s#2"), {
      exited: run.done,
    });
    assert.deepEqual(commandsOf(dir, "s"), [second.command_pgid]);
    const err = await waitFor("the lost agent's warning", () => output().includes("re-queued") && output());
    assert.match(
      err,
      new RegExp(`its command's process group ${record.command_pgid} killed; task s re-queued`),
    );
  } finally {
    await cleanup();
  }
});

test("with a huge --poll, a re-attached agent whose wrapper is killed is still found lost and re-queued", async () => {
  const { ws, record, run, output, cleanup } = await reattached(["--poll", HUGE_POLL]);
  try {
    process.kill(record.pid, "SIGKILL");
    await waitFor("the task re-queued and claimed again", () => commandRecorded(ws, "s#2"), {
      ms: 60_000, // far below --poll: only a wake by its own deadline finds it
      exited: run.done,
    });
    assert.match(output(), /agent s#1 is gone without a completion record/);
  } finally {
    await cleanup();
  }
});

test("with a huge --poll, a checkpoint due by --checkpoint-interval is written when due", async () => {
  const { ws, sdd, dir, env, cleanup } = await orchestratorWorkspace("bernstein-cadence-");
  const args = ["--poll", HUGE_POLL, "--checkpoint-interval", "1", "--checkpoint-every", "0"];
  const run = spawnCli(["--sdd", sdd, "start", ...args], { cwd: dir, env });
  try {
    await waitFor("the orchestrator running", async () => (await readStatusFile(ws))?.pid === run.child.pid, {
      exited: run.done,
    });
    await addTask(ws, { id: "t", title: "t", command: "true" });
    await waitFor("the task done", async () => (await taskCounts(ws)).done === 1, { exited: run.done });
    await waitFor("a checkpoint", async () => (await listCheckpointFiles(ws)).length > 0, {
      ms: 60_000, // far below --poll: only a wake by its own deadline finds it
      exited: run.done,
    });
  } finally {
    run.child.kill("SIGKILL");
    await run.done;
    await cleanup();
  }
});

test("SIGTERM as a re-attached wrapper dies: the re-queued task is not claimed again after the signal", async () => {
  const { ws, record, run, cleanup } = await reattached(["--poll", HUGE_POLL]);
  try {
    // The wrapper's death and the signal reach the orchestrator together: whichever pass sees
    // the lost agent runs after the signal.
    process.kill(record.pid, "SIGKILL");
    run.child.kill("SIGTERM");
    const r = await run.done;
    assert.equal(r.code, 143, r.stderr);
    assert.equal(await readAgentRecord(ws, "s#2"), null, "no second attempt after the signal");
  } finally {
    await cleanup();
  }
});
