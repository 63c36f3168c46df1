import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

/**
 * Deterministic crashes: the orchestrator SIGKILLs itself (BERNSTEIN_CRASH_AT) at a chosen point of
 * a chosen decision — between intent and action, between action and commit, after the commit —
 * then a plain restart must finish the backlog with every command run exactly once.
 */
const POINTS = [
  "task_created:after_action",
  "task_claimed:after_action",
  "task_spawn_confirmed:before_action",
  "task_spawn_confirmed:after_action",
  "task_spawn_confirmed:after_commit",
  "task_completed:before_action",
  "task_completed:after_action",
  "task_failed:after_action",
  "task_retry:after_action",
];

for (const point of POINTS) {
  test(`SIGKILL at ${point}: restart finishes, every command ran exactly once`, async () => {
    const { dir, cleanup } = await scratchDir("bernstein-cp-");
    try {
      const sdd = path.join(dir, ".sdd");
      const { workspace } = await initWorkspace(sdd);
      const results = path.join(dir, "results.txt");
      for (const id of ["x1", "x2", "x3"]) {
        await addTask(workspace, { id, title: id, command: `echo ${id} >> ${results}; sleep 0.05` });
      }
      // Fails its first attempt, then succeeds (exercises task_failed and task_retry).
      await addTask(workspace, {
        id: "f1",
        title: "f1",
        command: "test -f f1.marker || { touch f1.marker; exit 3; }",
        maxRetries: 1,
      });
      // Reports usage: the ledger must get exactly one row for it.
      await addTask(workspace, {
        id: "c1",
        title: "c1",
        command: `echo '{"cost_usd": 0.5, "input_tokens": 2, "output_tokens": 1}'`,
      });
      const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
      const args = [
        "--sdd",
        sdd,
        "start",
        "--until-idle",
        "--max-agents",
        "2",
        "--poll",
        "20",
        "--retry-backoff",
        "10",
      ];
      const crashed = await runCli(args, { cwd: dir, env: { ...env, BERNSTEIN_CRASH_AT: point } });
      assert.equal(crashed.signal, "SIGKILL", `the crash point was reached: ${crashed.stderr}`);
      const again = await runCli([...args, "--json"], { cwd: dir, env });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(JSON.parse(again.stdout).counts, { open: 0, claimed: 0, done: 5, failed: 0 });
      const lines = (await readFile(results, "utf8")).split("\n").filter(Boolean).sort();
      assert.deepEqual(lines, ["x1", "x2", "x3"]);
      const ledger = (await readFile(path.join(sdd, "metrics/cost-ledger.jsonl"), "utf8")).trim().split("\n");
      assert.equal(ledger.length, 1, "one ledger row per usage");
      const status = JSON.parse((await runCli(["--sdd", sdd, "status", "--json"], { env })).stdout);
      assert.equal(status.cost_usd, 0.5);
      const doctor = await runCli(["--sdd", sdd, "doctor", "--json"], { env });
      assert.equal(doctor.code, 0, doctor.stdout); // includes the WAL chains and the audit chain
    } finally {
      await cleanup();
    }
  });
}
