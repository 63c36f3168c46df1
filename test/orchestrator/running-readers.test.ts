/**
 * `status`, `task list` and `doctor` beside a running orchestrator that moves task files between
 * the backlog folders (open → claimed → done): each answer is of one moment, so every task is
 * counted once, and no check fails on a healthy workspace. The readers run in the test's own
 * process, back to back for the whole run (a CLI child per read would take the cores the
 * orchestrator needs and read a few times only); the CLI's own answers are checked once after.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runDoctor } from "../../src/orchestrator/doctor.js";
import { collectStatus } from "../../src/orchestrator/status.js";
import { addTask, scanBacklog } from "../../src/orchestrator/tasks.js";
import { spawnCli, waitFor, withSeed } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

test("status, task list and doctor give exact counts and no failed check while an orchestrator moves files", async () => {
  await withSeed("BERNSTEIN_RUNNING_READERS_SEED", async (rand) => {
    const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-running-readers-");
    let start: ReturnType<typeof spawnCli> | undefined;
    try {
      const n = 60 + Math.floor(rand() * 21);
      const ids = Array.from({ length: n }, (_, i) => `t${String(i).padStart(3, "0")}`);
      // Half report a usage: its row is appended between the completion's intent and its commit.
      const usage = `echo '{"cost_usd": 0.25, "input_tokens": 3, "output_tokens": 1, "model": "m"}'`;
      for (const [i, id] of ids.entries())
        await addTask(ws, { id, title: id, command: i % 2 ? "true" : usage });
      start = spawnCli(["--sdd", sdd, "start", "--until-idle", "--max-agents", "4", "--poll", "20"], {
        cwd: dir,
        env,
      });
      let exited = false;
      void start.done.then(() => (exited = true));
      const doctorOpts = { env: { ...process.env, ...env } };
      const readers = [
        async () => {
          const scan = await scanBacklog(ws);
          assert.deepEqual(scan.tasks.map((t) => t.spec.id).sort(), ids, "task list: each task once");
          assert.equal(scan.duplicates.size, 0);
        },
        async () => {
          const s = await collectStatus(ws);
          assert.equal(sum(s.tasks), n, `status: ${JSON.stringify(s.tasks)}`);
          return s.tasks;
        },
        async () => {
          const failed = (await runDoctor(sdd, doctorOpts)).checks.filter((c) => c.verdict === "fail");
          assert.deepEqual(failed, [], "doctor: no check fails");
        },
      ];
      // Reads begin once the run has moved a file, and go on, in a seeded order, until it exits.
      await waitFor("the first claim", async () => (await collectStatus(ws)).tasks.open < n, {
        exited: start.done,
      });
      let reads = 0;
      let midRun = 0;
      while (!exited) {
        const reader = readers[Math.floor(rand() * readers.length)]!;
        const counts = await reader();
        reads++;
        if (counts && counts.done > 0 && counts.done < n) midRun++;
      }
      const r = await start.done;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(midRun > 0, `a status read saw the run half-way (${reads} reads)`);

      const status = JSON.parse((await cli("status", "--json")).stdout);
      assert.equal(status.tasks.done, n);
      assert.equal(sum(status.tasks), n);
      const list = JSON.parse((await cli("task", "list", "--json")).stdout);
      assert.equal(list.tasks.length, n);
      const doctor = await cli("doctor", "--json");
      assert.equal(doctor.code, 0, doctor.stdout);
    } finally {
      // A failed read leaves the run going: it ends by itself (--until-idle), with its agents; a
      // kill would leave them writing into the workspace being removed.
      await start?.done;
      await cleanup();
    }
  });
});
