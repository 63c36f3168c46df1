import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { readClosedMarker } from "../../src/wal/recovery.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { launcherEnv, launcherFlags } from "../../src/workspace/launcher.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { CLI, runMain, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

async function statusOf(
  cli: (...a: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }>,
) {
  const r = await cli("status", "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function entriesOf(ws: Workspace) {
  const all = [];
  for (const run of await listRuns(ws))
    for await (const { entry } of readWalEntries(run.file)) all.push({ run: run.run_id, ...entry });
  return all;
}

test("stop during a busy run, then start: the backlog finishes with nothing lost or duplicated", async () => {
  const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-stop-");
  try {
    const results = path.join(dir, "results.txt");
    const gate = path.join(dir, "gate");
    const ids: string[] = [];
    // Eight: more than --max-agents 3 can hold, so some are still open at the stop.
    for (let i = 0; i < 8; i++) {
      const id = `s-${String(i).padStart(2, "0")}`;
      ids.push(id);
      // The first three finish at once; the rest wait for the gate, opened only after the stop, so
      // the stop lands mid-run however slow the machine.
      const wait = i < 3 ? "" : `; ${untilGate(gate)}`;
      await addTask(ws, { id, title: id, command: `echo ${id} >> ${results}${wait}` });
    }
    const started = await cli("start", "--detach", "--max-agents", "3", "--poll", "50", "--json");
    assert.equal(started.code, 0, started.stderr);
    const pid = JSON.parse(started.stdout).pid as number;
    assert.ok(isProcessAlive(pid));
    await waitFor("a few tasks done", async () => (await taskCounts(ws)).done >= 3);
    const stopped = await cli("stop", "--timeout", "0.1", "--json");
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(JSON.parse(stopped.stdout).stopped, true);
    const after = await statusOf(cli);
    assert.equal(after.orchestrator.running, false);
    assert.ok(after.tasks.open > 0, "stopped before the end");
    // Clean shutdown: orchestrator_stopped written and the run closed, so the next start replays nothing.
    const runs = await listRuns(ws);
    assert.ok(await readClosedMarker(ws, runs[runs.length - 1].run_id));
    const entries = await entriesOf(ws);
    assert.equal(entries[entries.length - 1].decision_type, "orchestrator_stopped");

    await writeFile(gate, "");
    const again = await cli("start", "--until-idle", "--max-agents", "3", "--poll", "50", "--json");
    assert.equal(again.code, 0, again.stderr);
    const doc = JSON.parse(again.stdout);
    assert.equal(doc.recovery.replay.found, 0, "nothing to replay after a clean stop");
    assert.equal(doc.counts.done, 8);
    const lines = (await readFile(results, "utf8")).split("\n").filter(Boolean).sort();
    assert.deepEqual(lines, ids, "every task ran exactly once");
    // status in this process: the same command a real process ran above (`after`).
    const fin = await statusOf((...a) => runMain(["--sdd", sdd, ...a], { cwd: dir, env }));
    assert.equal(fin.tasks.done, 8);
    assert.equal(fin.agents_running, 0);
    assert.equal(fin.agents_recorded, 0);
    assert.ok(fin.checkpoint && fin.checkpoint.id, "a checkpoint was written at stop");
    assert.equal((await cli("doctor")).code, 0);
  } finally {
    await cleanup();
  }
});

test("stop --force kills the agents' process groups and re-queues their tasks", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-force-");
  try {
    // The first attempt of each task hangs; a re-queued attempt finishes at once.
    for (const id of ["f1", "f2"]) {
      await addTask(ws, {
        id,
        title: id,
        command: `if [ -f ${id}.ran ]; then exit 0; fi; touch ${id}.ran; sleep 60`,
      });
    }
    const started = await cli("start", "--detach", "--max-agents", "2", "--poll", "50");
    assert.equal(started.code, 0, started.stderr);
    await waitFor("both agents running", async () => {
      const recs = await Promise.all(["f1#1", "f2#1"].map((a) => readAgentRecord(ws, a)));
      return recs.every((r) => r && r.command_pgid) ? recs : undefined;
    });
    const recs = (await Promise.all(["f1#1", "f2#1"].map((a) => readAgentRecord(ws, a))))!;
    const stopped = await cli("stop", "--force");
    assert.equal(stopped.code, 0, stopped.stderr);
    for (const r of recs) {
      await waitFor(`agent ${r!.agent_id} killed`, async () => !isProcessAlive(r!.command_pgid!));
    }
    const st = await statusOf(cli);
    assert.equal(st.tasks.open, 2);
    assert.equal(st.tasks.claimed, 0);
    const interrupted = (await entriesOf(ws)).filter(
      (e) => e.decision_type === "task_interrupted" && e.committed,
    );
    assert.deepEqual(interrupted.map((e) => e.inputs.task_id).sort(), ["f1", "f2"]);
    assert.equal(interrupted[0].output.reason, "stop --force killed the agent");
    const again = await cli("start", "--until-idle", "--poll", "50", "--json");
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).counts.done, 2);
    assert.deepEqual((await readdir(path.join(dir, ".sdd/backlog/done"))).sort(), ["f1.md", "f2.md"]);
  } finally {
    await cleanup();
  }
});

test("bin/bernstein's orchestrator and agent wrappers run Node as it does; the agents get the caller's environment", async () => {
  const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-flags-");
  try {
    // Without them (`node FILE` does not read FILE's first lines) a process could hang at exit.
    assert.ok(launcherFlags().includes("--no-concurrent-recompilation"));
    const seen = path.join(dir, "agent-tunables");
    await addTask(ws, {
      id: "w1",
      title: "w1",
      command: `printf '%s' "$GLIBC_TUNABLES" > ${seen}.tmp && mv ${seen}.tmp ${seen}; sleep 30`,
    });
    // bin/bernstein itself, as a user runs it, with a GLIBC_TUNABLES of the caller's own.
    const callers = "glibc.malloc.arena_max=4";
    const started = spawnSync(CLI, ["--sdd", sdd, "start", "--detach", "--poll", "50", "--json"], {
      cwd: dir,
      env: { ...process.env, ...env, GLIBC_TUNABLES: callers },
      encoding: "utf8",
    });
    assert.equal(started.status, 0, started.stderr);
    const orchestrator = JSON.parse(started.stdout).pid as number;
    const wrapper = (
      await waitFor("the agent running", async () => (await readAgentRecord(ws, "w1#1")) ?? undefined)
    ).pid;
    const ours = launcherEnv({}).GLIBC_TUNABLES!;
    const firstOfOurs = ours.split(":")[0]!;
    for (const [who, pid] of [
      ["orchestrator", orchestrator],
      ["agent wrapper", wrapper],
    ] as const) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      for (const flag of launcherFlags())
        assert.ok(argv.includes(flag), `${who}: ${flag} in ${argv.join(" ")}`);
      // /proc shows the environment as glibc left it after reading its tunables: cut after the
      // first. The agent's report below shows that the rest came along too.
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      assert.ok(
        environ.some((e) => e.startsWith(`GLIBC_TUNABLES=${firstOfOurs}`)),
        `${who}: GLIBC_TUNABLES=${ours}…`,
      );
    }
    const agentSaw = await waitFor("the agent's report", async () =>
      readFile(seen, "utf8").then(
        (text) => ({ text }),
        () => undefined,
      ),
    );
    assert.equal(agentSaw.text, callers);
    assert.equal((await cli("stop", "--force")).code, 0);
  } finally {
    await cli("stop", "--force"); // after a failed assertion: the agent would outlive the folder
    await cleanup();
  }
});

test("a second start on a locked workspace is refused naming the holder; stop when idle is a no-op", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-lock-");
  try {
    await addTask(ws, { id: "slow", title: "slow", command: "sleep 30" });
    const started = await cli("start", "--detach", "--json");
    assert.equal(started.code, 0, started.stderr);
    const pid = JSON.parse(started.stdout).pid;
    const second = await cli("start", "--until-idle");
    assert.equal(second.code, 3);
    assert.match(second.stderr, new RegExp(`locked by pid ${pid}`));
    const secondDetached = await cli("start", "--detach");
    assert.equal(secondDetached.code, 3);
    assert.equal((await cli("stop", "--force")).code, 0);
    const idle = await cli("stop", "--json");
    assert.equal(idle.code, 0);
    assert.equal(JSON.parse(idle.stdout).running, false);
  } finally {
    await cleanup();
  }
});
