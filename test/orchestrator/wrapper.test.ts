import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  EXIT_DUPLICATE,
  agentLogPath,
  parseUsageLine,
  readAgentRecord,
  readCompletion,
  type WrapperJob,
} from "../../src/orchestrator/wrapper.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { scratchDir, waitFor } from "../helpers.js";

const WRAPPER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../src/orchestrator/wrapper-main.js",
);

function runWrapperProcess(job: WrapperJob): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRAPPER, JSON.stringify(job)], {
      stdio: "ignore",
      detached: true,
    });
    child.on("error", reject);
    child.on("exit", (code) => resolve(code));
  });
}

/** Gone within `ms` (a zombie, waiting for its new parent to reap it, counts as gone: isProcessAlive). */
async function goneWithin(pid: number, ms: number): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 50))) {
    if (!isProcessAlive(pid)) return true;
  }
  return false;
}

async function setup() {
  const s = await scratchDir();
  const { workspace } = await initWorkspace(path.join(s.dir, ".sdd"));
  const job = (agentId: string, argv: string[], timeout_s = 60): WrapperJob => ({
    sdd: workspace.root,
    agent_id: agentId,
    task_id: agentId.split("#")[0],
    attempt: Number(agentId.split("#")[1]),
    argv,
    cwd: s.dir,
    env: {},
    timeout_s,
  });
  return { ...s, ws: workspace, job };
}

test("wrapper records pid, output, exit status and cost from the final JSON line", async () => {
  const { ws, job, cleanup } = await setup();
  try {
    const script =
      'echo working; echo \'{"cost_usd": 0.25, "usage": {"input_tokens": 10, "output_tokens": 4}, "model": "m1"}\'; exit 3';
    assert.equal(await runWrapperProcess(job("t1#1", ["sh", "-c", script])), 0);
    const rec = await readAgentRecord(ws, "t1#1");
    assert.ok(rec && rec.pid > 0 && rec.command_pgid && rec.command_pgid > 0);
    const done = await readCompletion(ws, "t1#1");
    assert.ok(done);
    assert.equal(done.exit_code, 3);
    assert.equal(done.timed_out, false);
    assert.equal(done.cost_usd, 0.25);
    assert.equal(done.input_tokens, 10);
    assert.equal(done.output_tokens, 4);
    assert.equal(done.model, "m1");
    assert.match(await readFile(agentLogPath(ws, "t1#1"), "utf8"), /^working\n/);
  } finally {
    await cleanup();
  }
});

test("a command that exits at once still leaves its process group in the record", async () => {
  const { ws, job, cleanup } = await setup();
  try {
    // The record's rewrite with the group races the command's exit; the wrapper must not finish first.
    const ids = Array.from({ length: 12 }, (_, i) => `fast${i}#1`);
    const codes = await Promise.all(ids.map((id) => runWrapperProcess(job(id, ["true"]))));
    assert.deepEqual(
      codes,
      ids.map(() => 0),
    );
    for (const id of ids) {
      const rec = await readAgentRecord(ws, id);
      assert.ok(rec?.command_pgid && rec.command_pgid > 0, `${id}: ${JSON.stringify(rec)}`);
      assert.equal((await readCompletion(ws, id))?.exit_code, 0);
    }
  } finally {
    await cleanup();
  }
});

test("a second wrapper for the same agent id runs nothing (the run-once token)", async () => {
  const { dir, ws, job, cleanup } = await setup();
  try {
    const marker = path.join(dir, "ran.txt");
    const argv = ["sh", "-c", `echo x >> ${marker}`];
    assert.equal(await runWrapperProcess(job("t2#1", argv)), 0);
    assert.equal(await runWrapperProcess(job("t2#1", argv)), EXIT_DUPLICATE);
    assert.equal(await readFile(marker, "utf8"), "x\n");
    assert.equal((await readCompletion(ws, "t2#1"))!.exit_code, 0);
  } finally {
    await cleanup();
  }
});

test("timeout kills the command's whole process group", async () => {
  const { dir, ws, job, cleanup } = await setup();
  try {
    const pidFile = path.join(dir, "grandchild.pid");
    // The command starts a grandchild that would outlive a plain kill of the shell.
    const argv = ["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`];
    assert.equal(await runWrapperProcess(job("t3#1", argv, 0.5)), 0);
    const done = await readCompletion(ws, "t3#1");
    assert.ok(done);
    assert.equal(done.timed_out, true);
    const grandchild = Number(await readFile(pidFile, "utf8"));
    assert.equal(await goneWithin(grandchild, 5000), true);
  } finally {
    await cleanup();
  }
});

test("a missing binary is recorded as a clear error", async () => {
  const { ws, job, cleanup } = await setup();
  try {
    assert.equal(await runWrapperProcess(job("t4#1", ["no-such-agent-binary-xyz", "-p", "hi"])), 0);
    const done = await readCompletion(ws, "t4#1");
    assert.equal(done!.error, "agent binary not found: no-such-agent-binary-xyz");
    assert.equal(done!.exit_code, null);
  } finally {
    await cleanup();
  }
});

test("a workspace restored under a running agent: its cost is read from what it wrote, the completion lands in the restored workspace", async () => {
  const { dir, ws, job, cleanup } = await setup();
  try {
    const started = path.join(dir, "started");
    const go = path.join(dir, "go");
    // The command waits for the test to have replaced the workspace folder, then prints its cost.
    const script = `touch ${started}; while [ ! -e ${go} ]; do sleep 0.02; done; echo '{"cost_usd": 0.75, "output_tokens": 5}'`;
    const exited = runWrapperProcess(job("r1#1", ["sh", "-c", script]));
    await waitFor("the command to start", () => existsSync(started), { exited });
    // What a restore into the same folder does: the old tree is moved aside, a copy (holding this
    // attempt's run-once token, an empty log) takes its place.
    const aside = `${ws.root}.pre-restore`;
    await rename(ws.root, aside);
    await cp(aside, ws.root, { recursive: true });
    await writeFile(agentLogPath(ws, "r1#1"), "");
    await writeFile(go, "");
    assert.equal(await exited, 0);
    const done = await readCompletion(ws, "r1#1");
    assert.equal(done?.cost_usd, 0.75);
    assert.equal(done?.output_tokens, 5);
    assert.equal(await readFile(agentLogPath(ws, "r1#1"), "utf8"), "");
    assert.match(await readFile(path.join(aside, "logs", "agents", "r1#1.log"), "utf8"), /"cost_usd": 0\.75/);
  } finally {
    await cleanup();
  }
});

test("usage line parsing", () => {
  assert.deepEqual(parseUsageLine('{"cost_usd":1.5,"input_tokens":3,"output_tokens":2}'), {
    cost_usd: 1.5,
    input_tokens: 3,
    output_tokens: 2,
    model: null,
  });
  assert.equal(parseUsageLine('{"total_cost_usd":0.1}')!.cost_usd, 0.1);
  assert.equal(parseUsageLine('{"tokens":3}'), null);
  assert.equal(parseUsageLine("not json"), null);
  assert.equal(parseUsageLine('{"cost_usd":-1}'), null);
});
