/**
 * Agents the state records but whose processes are gone: `status` does not count them as running
 * (it checks liveness as `start` does), and `start` re-queues them during recovery instead of
 * re-attaching them and waiting out a grace period. A wrapper still starting (no run-once token
 * yet, but its process is there) is re-attached, never re-queued.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { WRAPPER_MAIN, agentRecordPath, readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { Workspace, initWorkspace } from "../../src/workspace/layout.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { runCli, scratchDir, type CliResult, waitFor, CLI_ARGV, cliEnv } from "../helpers.js";

function startChild(sdd: string, dir: string, env: Record<string, string>, args: string[]) {
  const child = spawn(process.execPath, [...CLI_ARGV, "--sdd", sdd, "start", ...args], {
    cwd: dir,
    env: cliEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const done = new Promise<CliResult>((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Gone or a zombie (a killed wrapper may wait for a reaper that never comes): isProcessAlive says both. */
async function processGone(pid: number): Promise<boolean> {
  return !isProcessAlive(pid);
}

/**
 * A workspace whose state records a running agent for task `long` while no process of it is left:
 * an orchestrator and its agent, both SIGKILLed. The task's second run finishes at once.
 */
async function withDeadAgent(prefix: string) {
  const s = await scratchDir(prefix);
  const sdd = path.join(s.dir, ".sdd");
  const { workspace: ws } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: s.dir, env });
  const second = path.join(s.dir, "second-run");
  await addTask(ws, {
    id: "long",
    title: "long",
    command: `if [ -e ${second} ]; then exit 0; fi; touch ${second}; sleep 600`,
  });
  const orch = startChild(sdd, s.dir, env, ["--poll", "20"]);
  // Its command must have made `second` before the kill: a command spawned but killed before its
  // first line would sleep 600 s in the task's second run.
  const record = await waitFor("the agent's command to run", async () => {
    const r = await readAgentRecord(ws, "long#1");
    return r?.command_pgid && existsSync(second) ? r : undefined;
  });
  orch.child.kill("SIGKILL");
  await orch.done;
  for (const pgid of [record.pid, record.command_pgid!]) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // gone already
    }
  }
  await waitFor(
    "the agent's processes to be gone",
    async () => (await processGone(record.pid)) && (await processGone(record.command_pgid!)),
  );
  return { ...s, sdd, ws, env, cli, record };
}

interface StatusDoc {
  agents_running: number;
  agents_recorded: number;
  agents: { agent_id: string; running: boolean }[];
  orchestrator: { running: boolean };
}

async function statusOf(cli: (...a: string[]) => Promise<CliResult>): Promise<StatusDoc> {
  const r = await cli("status", "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusDoc;
}

test("status: an agent whose process is gone is recorded, not running; start re-queues it at once", async () => {
  const { ws, cli, cleanup } = await withDeadAgent("bernstein-phantom-");
  try {
    const st = await statusOf(cli);
    assert.equal(st.orchestrator.running, false);
    assert.equal(st.agents_running, 0, "a dead agent is not running");
    assert.equal(st.agents_recorded, 1);
    assert.deepEqual(
      st.agents.map((a) => [a.agent_id, a.running]),
      [["long#1", false]],
    );
    const human = await cli("status");
    assert.match(
      human.stdout,
      /^agents running: 0; recorded, not running: 1 \(.*the next start re-queues them\)$/m,
    );

    // Without its run-once token (a wrapper killed before it wrote one, or a history without
    // tokens) the process table still proves it gone: re-queued during recovery, no grace period.
    await unlink(agentRecordPath(ws, "long#1"));
    assert.equal((await statusOf(cli)).agents_running, 0);
    const r = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /; 0 agent\(s\) re-attached, 1 lost agent\(s\) re-queued,/,
      "re-queued during recovery",
    );
    assert.match(r.stdout, /this run 1 done, 0 failed/);
  } finally {
    await cleanup();
  }
});

test("start re-attaches a wrapper that is still starting (no token yet, process alive) and re-queues it once it is gone", async () => {
  const { dir, sdd, ws, env, cli, record, cleanup } = await withDeadAgent("bernstein-starting-");
  let starting: ChildProcess | undefined;
  try {
    await unlink(agentRecordPath(ws, "long#1"));
    // A wrapper for the same attempt, held before its first line: what a wrapper looks like between
    // its spawn and its run-once token.
    const hold = path.join(dir, "hold.cjs");
    await writeFile(hold, "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600000);\n");
    const job = {
      sdd: ws.root,
      agent_id: "long#1",
      task_id: "long",
      attempt: 1,
      argv: ["true"],
      cwd: dir,
      env: {},
      timeout_s: 60,
    };
    const s = spawn(process.execPath, ["--require", hold, WRAPPER_MAIN, JSON.stringify(job)], {
      stdio: "ignore",
    });
    starting = s;
    await waitFor("the held wrapper to be in the process table", async () =>
      (await readFile(`/proc/${s.pid}/cmdline`, "utf8").catch(() => "")).includes(WRAPPER_MAIN),
    );
    const st = await statusOf(cli);
    assert.equal(st.agents_running, 1, "a starting wrapper is running");

    const orch = startChild(sdd, dir, env, ["--until-idle", "--poll", "20", "--json"]);
    await waitFor("the orchestrator to finish recovery", async () => {
      const f = await readFile(path.join(sdd, "runtime", "orchestrator.json"), "utf8").catch(() => "");
      const sf = f ? (JSON.parse(f) as { pid: number; state: string }) : undefined;
      return sf !== undefined && sf.pid === orch.child.pid && sf.state !== "recovering";
    });
    s.kill("SIGKILL");
    const r = await orch.done;
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { recovery: { reattached: number; lost_agents_requeued: number } };
    assert.equal(doc.recovery.reattached, 1, "the starting wrapper was re-attached, not re-queued");
    assert.equal(doc.recovery.lost_agents_requeued, 1, "and re-queued once its process was gone");
    assert.notEqual(record.pid, s.pid);
  } finally {
    starting?.kill("SIGKILL");
    await cleanup();
  }
});

test("a copy of a workspace beside the original does not count, re-attach or kill the original's live agent", async () => {
  const s = await scratchDir("bernstein-copy-agent-");
  const sdd = path.join(s.dir, "original", ".sdd");
  const { workspace: ws } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cliIn =
    (root: string) =>
    (...args: string[]) =>
      runCli(["--sdd", root, ...args], { cwd: s.dir, env });
  const cli = cliIn(sdd);
  const second = path.join(s.dir, "second-run");
  let record: Awaited<ReturnType<typeof readAgentRecord>> = null;
  try {
    await addTask(ws, {
      id: "long",
      title: "long",
      command: `if [ -e ${second} ]; then exit 0; fi; touch ${second}; sleep 600`,
    });
    const orch = startChild(sdd, s.dir, env, ["--poll", "20"]);
    record = await waitFor("the agent's command to run", async () => {
      const r = await readAgentRecord(ws, "long#1");
      return r?.command_pgid && existsSync(second) ? r : undefined;
    });
    assert.equal((await cli("stop", "--timeout", "0")).code, 0);
    assert.equal((await orch.done).code, 0);
    // A restore beside the original on the same host: the same files, another folder.
    const copy = path.join(s.dir, "copy", ".sdd");
    await cp(sdd, copy, { recursive: true });
    const inCopy = cliIn(copy);

    assert.equal((await statusOf(cli)).agents_running, 1, "the original's agent runs");
    const copied = await statusOf(inCopy);
    assert.deepEqual(
      copied.agents.map((a) => [a.agent_id, a.running]),
      [["long#1", false]],
      "the copy's session has no process of its own",
    );
    // A token of an earlier version names no workspace: the live wrapper's job tells.
    const token = agentRecordPath(new Workspace(copy), "long#1");
    const { sdd: named, ...unnamed } = JSON.parse(await readFile(token, "utf8")) as { sdd: string };
    assert.equal(named, ws.root, "the token names its workspace");
    await writeFile(token, JSON.stringify(unnamed) + "\n");
    assert.equal((await statusOf(inCopy)).agents_running, 0);

    const r = await inCopy("start", "--until-idle", "--poll", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /; 0 agent\(s\) re-attached, 1 lost agent\(s\) re-queued,/);
    assert.ok(isProcessAlive(record.pid), "the original's wrapper was not killed");
    assert.ok(isProcessAlive(record.command_pgid!), "nor its command");
    assert.equal((await statusOf(cli)).agents_running, 1);
  } finally {
    for (const pgid of [record?.pid, record?.command_pgid]) {
      try {
        if (pgid) process.kill(-pgid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await s.cleanup();
  }
});
