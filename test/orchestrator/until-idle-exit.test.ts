/**
 * `start --until-idle` exits 1 for what this invocation did (a task failed terminally, a task
 * became unable to run), not for failures an earlier run already reported; `status --json`
 * carries the totals.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

test("start --until-idle: exit 1 for a failure of this run only; an old failure leaves later runs at 0", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-exit-");
  try {
    const sdd = path.join(dir, ".sdd");
    const { workspace: ws } = await initWorkspace(sdd);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: dir, env });
    const start = async () => {
      const r = await cli("start", "--until-idle", "--poll", "20", "--json");
      return {
        ...r,
        doc: JSON.parse(r.stdout) as { this_run: Record<string, unknown>; counts: Record<string, number> },
      };
    };

    await addTask(ws, { id: "bad", title: "bad", command: "exit 3" });
    const first = await start();
    assert.equal(first.code, 1, "the run in which a task failed exits 1");

    await addTask(ws, { id: "good", title: "good", command: "true" });
    const second = await start();
    assert.equal(second.code, 0, `a run that only completed work exits 0: ${second.stderr}`);
    assert.deepEqual(first.doc.this_run, { done: 0, failed: ["bad"], blocked: [] });
    assert.deepEqual(second.doc.this_run, { done: 1, failed: [], blocked: [] });
    assert.equal(second.doc.counts.failed, 1, "the totals still count the old failure");

    const nothing = await start();
    assert.equal(nothing.code, 0, "a run with nothing to do exits 0");

    // A new task that can never run (its dependency failed before) is news: exit 1, once.
    await addTask(ws, { id: "after-bad", title: "after bad", command: "true", dependsOn: ["bad"] });
    const blocked = await start();
    assert.equal(blocked.code, 1);
    assert.deepEqual(blocked.doc.this_run, { done: 0, failed: [], blocked: ["after-bad"] });
    assert.match(blocked.stderr, /task after-bad cannot run: dependency bad failed/);
    const again = await start();
    assert.equal(again.code, 0, "the same blocked task does not fail every later run");
    assert.match(again.stderr, /task after-bad cannot run: dependency bad failed/, "it is still named");

    // Under --quiet a failing run still says why, in one line.
    await addTask(ws, { id: "bad-2", title: "bad 2", command: "exit 4" });
    const quiet = await cli("start", "--until-idle", "--poll", "20", "--quiet");
    assert.equal(quiet.code, 1);
    assert.equal(quiet.stdout, "");
    assert.equal(quiet.stderr, "bernstein: start: this run 1 task(s) failed terminally\n");

    const status = await cli("status", "--json");
    assert.equal(status.code, 0, status.stderr);
    const tasks = (JSON.parse(status.stdout) as { tasks: Record<string, number> }).tasks;
    assert.equal(tasks.failed, 2);
    assert.equal(tasks.done, 1);
    assert.equal(tasks.open, 1);
  } finally {
    await cleanup();
  }
});
