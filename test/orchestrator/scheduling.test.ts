import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

async function setup(prefix: string) {
  const s = await scratchDir(prefix);
  const sdd = path.join(s.dir, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const start = (...extra: string[]) =>
    runCli(["--sdd", sdd, "start", "--until-idle", "--poll", "20", "--json", ...extra], { cwd: s.dir, env });
  return { ...s, sdd, ws: workspace, start };
}

test("one agent runs tasks by priority, then id, after their dependencies", async () => {
  const { dir, ws, start, cleanup } = await setup("bernstein-order-");
  try {
    const out = path.join(dir, "order.txt");
    const add = (id: string, priority: number, dependsOn: string[] = []) =>
      addTask(ws, { id, title: id, priority, dependsOn, command: `echo ${id} >> ${out}` });
    await add("low", 3);
    await add("mid-b", 2);
    await add("mid-a", 2);
    await add("urgent-after-low", 1, ["low"]);
    await add("urgent", 1);
    const r = await start("--max-agents", "1");
    assert.equal(r.code, 0, r.stderr);
    const order = (await readFile(out, "utf8")).trim().split("\n");
    assert.deepEqual(order, ["urgent", "mid-a", "mid-b", "low", "urgent-after-low"]);
  } finally {
    await cleanup();
  }
});

test("a timeout or --poll beyond Node's 24.8-day timer limit is waited out, not fired at once", async () => {
  const { dir, sdd, ws, cleanup } = await setup("bernstein-long-timer-");
  try {
    const out = path.join(dir, "ran.txt");
    // 30 days (as `task add --timeout` takes), and a hand-written task file's far larger value.
    await addTask(ws, { id: "month", title: "month", command: `echo month >> ${out}`, timeoutS: 2_592_000 });
    await addTask(ws, { id: "huge", title: "huge", command: `echo huge >> ${out}`, timeoutS: 1e12 });
    const r = await runCli(["--sdd", sdd, "start", "--until-idle", "--poll", "3000000000", "--json"], {
      cwd: dir,
      env: { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /TimeoutOverflowWarning|timed out/);
    assert.deepEqual((await readFile(out, "utf8")).trim().split("\n").sort(), ["huge", "month"]);
  } finally {
    await cleanup();
  }
});

test("a retry's backoff wakes the loop however long --poll is", async () => {
  const { sdd, dir, ws, cleanup } = await setup("bernstein-backoff-wake-");
  try {
    await addTask(ws, { id: "flaky", title: "flaky", command: "false", maxRetries: 1 });
    const r = await runCli(
      ["--sdd", sdd, "start", "--until-idle", "--poll", "3000000000", "--retry-backoff", "50", "--json"],
      {
        cwd: dir,
        env: { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" },
        timeoutMs: 60_000,
      },
    );
    assert.equal(r.signal, null, "still waiting after 60 s: the backoff's end woke nothing");
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /task flaky failed/);
  } finally {
    await cleanup();
  }
});

test("a timed-out attempt is killed and retried up to max_retries, then fails with the reason", async () => {
  const { ws, start, cleanup } = await setup("bernstein-timeout-");
  try {
    await addTask(ws, { id: "hang", title: "hang", command: "sleep 30", timeoutS: 0.3, maxRetries: 1 });
    const r = await start("--retry-backoff", "50");
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /task hang failed: timed out after 0\.3s \(process group killed\)/);
    const fails = [];
    for (const run of await listRuns(ws)) {
      for await (const { entry } of readWalEntries(run.file)) {
        if (entry.committed && ["task_failed", "task_retry"].includes(entry.decision_type)) {
          fails.push(`${entry.decision_type}#${entry.inputs.attempt}:${entry.output.terminal ?? ""}`);
        }
      }
    }
    assert.deepEqual(fails, ["task_failed#1:false", "task_retry#2:", "task_failed#2:true"]);
  } finally {
    await cleanup();
  }
});
