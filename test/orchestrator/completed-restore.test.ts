/**
 * An agent that finishes while no orchestrator runs has its outcome only in its completion record
 * (`runtime/completed/`). A backup taken then must carry it: the restored copy's `start` collects
 * it (the task ran once, its cost is in the ledger), where without it the task would be re-queued,
 * run a second time, and the first run's cost lost. A record the restored WAL cannot place (its
 * spawn came after the backup's WAL position) is removed unread: nothing counted twice.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { Workspace } from "../../src/workspace/layout.js";
import { agentRecordPath, completionPath } from "../../src/orchestrator/wrapper.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { runCli, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

interface Status {
  tasks: Record<string, number>;
  cost_usd: number;
  agents: { agent_id: string; running: boolean; finished: boolean }[];
}

/**
 * A workspace with task L, whose agent appends a line to `runs` and reports the cost in
 * `cost.json`; `finishWhileDown()` starts it detached, kills the orchestrator (SIGKILL) while the
 * agent runs, then lets the agent finish and waits for its completion record.
 */
async function taskL(prefix: string) {
  const w = await orchestratorWorkspace(prefix);
  const runs = path.join(w.dir, "runs.txt");
  const go = path.join(w.dir, "go");
  const costFile = path.join(w.dir, "cost.json");
  // The agent waits for `go`, so it finishes only after the orchestrator is killed.
  const command = `echo ran >> ${runs}; while [ ! -e ${go} ]; do sleep 0.02; done; cat ${costFile}`;
  assert.equal((await w.cli("task", "add", "once", "--command", command, "--id", "L")).code, 0);
  const status = async (sdd: string): Promise<Status> => {
    const r = await runCli(["--sdd", sdd, "status", "--json"], { cwd: w.dir, env: w.env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };
  const ledger = async (sdd: string) =>
    (await readFile(new Workspace(sdd).costLedger, "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { agent_id: string; cost_usd: number });
  const finishWhileDown = async (cost: number): Promise<void> => {
    await writeFile(costFile, JSON.stringify({ cost_usd: cost }) + "\n");
    const started = await w.cli("start", "--detach");
    assert.equal(started.code, 0, started.stderr);
    await waitFor("the agent to run", () => existsSync(runs));
    const pid = (JSON.parse(await readFile(w.ws.lockFile, "utf8")) as { pid: number }).pid;
    process.kill(pid, "SIGKILL");
    await waitFor("the orchestrator to be gone", () => !isProcessAlive(pid));
    await writeFile(go, "");
    await waitFor("the completion record", () => existsSync(completionPath(w.ws, "L#1")));
  };
  return { ...w, runs, costFile, status, ledger, finishWhileDown };
}

const agentsOf = (s: Status) =>
  s.agents.map((a) => ({ id: a.agent_id, running: a.running, finished: a.finished }));

test("a task finished while the orchestrator was down: backup, restore, start runs it once and counts its cost; a drill's copy agrees", async (t) => {
  const w = await taskL("bernstein-completed-restore-");
  t.after(w.cleanup);
  await w.finishWhileDown(1.5);
  assert.deepEqual(agentsOf(await w.status(w.sdd)), [{ id: "L#1", running: false, finished: true }]);

  const archive = path.join(w.dir, "b.tar.gz");
  const backup = await w.cli("dr", "backup", "--to", archive);
  assert.equal(backup.code, 0, backup.stderr);
  const restored = path.join(w.dir, "restored", ".sdd");
  const restore = await runCli(["--sdd", restored, "dr", "restore", "--from", archive], {
    cwd: w.dir,
    env: w.env,
  });
  assert.equal(restore.code, 0, restore.stderr);
  assert.deepEqual(agentsOf(await w.status(restored)), [{ id: "L#1", running: false, finished: true }]);

  const run = await runCli(["--sdd", restored, "start", "--until-idle"], { cwd: w.dir, env: w.env });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await readFile(w.runs, "utf8"), "ran\n", "the task ran once");
  const after = await w.status(restored);
  assert.equal(after.tasks.done, 1, JSON.stringify(after.tasks));
  assert.equal(after.cost_usd, 1.5);
  assert.deepEqual(
    (await w.ledger(restored)).map((r) => [r.agent_id, r.cost_usd]),
    [["L#1", 1.5]],
  );

  // The drill restores the same state: its copy still has the finished agent to collect.
  const keep = path.join(w.dir, "drill");
  const drill = await w.cli("dr", "drill", "--keep", keep, "--json");
  assert.equal(drill.code, 0, drill.stdout + drill.stderr);
  assert.equal((JSON.parse(drill.stdout) as { ok: boolean }).ok, true);
  assert.deepEqual(agentsOf(await w.status(path.join(keep, "restored", ".sdd"))), [
    { id: "L#1", running: false, finished: true },
  ]);
});

// The files a backup copies after its WAL position (an unpaused backup, or one whose pause ran
// out): the backup's WAL has no spawn of L#1, but its completion record, and maybe its run-once
// token, are copied. Both are copied here from the live workspace into the restored one.
for (const withToken of [false, true]) {
  test(`a completion record whose spawn the restored WAL lacks (${withToken ? "with" : "without"} its run-once token) is removed uncounted; the task runs once there`, async (t) => {
    const w = await taskL(`bernstein-completed-unplaced-${withToken ? "t" : "n"}-`);
    t.after(w.cleanup);
    const archive = path.join(w.dir, "before-start.tar.gz");
    assert.equal((await w.cli("dr", "backup", "--to", archive)).code, 0);
    await w.finishWhileDown(9);
    const restored = path.join(w.dir, "restored", ".sdd");
    const rws = new Workspace(restored);
    const restore = await runCli(["--sdd", restored, "dr", "restore", "--from", archive], {
      cwd: w.dir,
      env: w.env,
    });
    assert.equal(restore.code, 0, restore.stderr);
    await copyFile(completionPath(w.ws, "L#1"), completionPath(rws, "L#1"));
    if (withToken) await copyFile(agentRecordPath(w.ws, "L#1"), agentRecordPath(rws, "L#1"));
    assert.deepEqual(agentsOf(await w.status(restored)), [], "the restored state has no agent");

    await writeFile(w.costFile, JSON.stringify({ cost_usd: 1.5 }) + "\n");
    const run = await runCli(["--sdd", restored, "start", "--until-idle"], { cwd: w.dir, env: w.env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /completion record of agent L#1 removed uncounted: the WAL holds no spawn of it/,
    );
    // Once in the live workspace, once in the restored one, whose history never ran it.
    assert.equal(await readFile(w.runs, "utf8"), "ran\nran\n");
    const after = await w.status(restored);
    assert.equal(after.tasks.done, 1, JSON.stringify(after.tasks));
    assert.equal(after.cost_usd, 1.5, "the unplaced record's cost is not counted");
    assert.deepEqual(
      (await w.ledger(restored)).map((r) => [r.agent_id, r.cost_usd]),
      [[withToken ? "L#2" : "L#1", 1.5]],
    );
    assert.deepEqual(await readdir(rws.completedDir), []);
  });
}
