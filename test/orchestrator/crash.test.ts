import assert from "node:assert/strict";
import { test } from "node:test";
import { listRuns } from "../../src/wal/reader.js";
import { Workspace } from "../../src/workspace/layout.js";
import { scratchDir, withSeed } from "../helpers.js";
import { cli, makeCrashBacklog, runCrashLoop } from "./support/crash.js";

test("crash test: 50 tasks, --max-agents 4, SIGKILL at random moments >= 5 times; every task done exactly once", () =>
  withSeed("BERNSTEIN_CRASH_SEED", async (rand, seed) => {
    const { dir, cleanup } = await scratchDir("bernstein-crash-");
    try {
      const s = await makeCrashBacklog(dir, 50, rand);
      const out = await runCrashLoop(s, { kills: 6, maxAgents: 4, rand, minMs: 50, maxMs: 900 });
      const ctx = `seed ${seed}, ${out.kills} kills (${out.killsWhileRunning} while running), ${out.starts} starts`;
      assert.ok(out.kills >= 5, `only ${out.kills} kills landed (${ctx})`);
      assert.equal(out.final.code, 0, `${ctx}: ${out.final.stderr}`);
      assert.deepEqual([...out.lines].sort(), s.ids, `results file: every id exactly once (${ctx})`);

      const status = await cli(s, ["status", "--json"]);
      assert.equal(
        status.code,
        0,
        `status (${ctx}): signal ${status.signal}; ${status.stdout}${status.stderr}`,
      );
      const st = JSON.parse(status.stdout);
      assert.equal(st.tasks.done, 50, ctx);
      assert.equal(st.tasks.open + st.tasks.claimed + st.tasks.failed, 0, ctx);
      assert.equal(st.agents_running, 0, ctx);
      assert.equal(st.agents_recorded, 0, ctx);

      // doctor runs `audit verify`'s and `wal verify`'s checks (verifyAuditLog; verifyRun of every
      // run and the rollback records) in the same process, so their verdicts stand for the two
      // commands here without two more CLI start-ups: the audit chain verified with its key
      // (a missing key would only warn), every WAL chain intact (a crash's torn tail, which
      // `wal verify` also accepts, warns).
      const doctor = await cli(s, ["doctor", "--json"]);
      assert.equal(doctor.code, 0, `doctor (${ctx}): ${doctor.stdout}${doctor.stderr}`);
      const checks = (JSON.parse(doctor.stdout) as { checks: { name: string; verdict: string }[] }).checks;
      const verdict = (name: string) => checks.find((c) => c.name === name)?.verdict;
      assert.equal(verdict("audit"), "pass", `audit chain (${ctx}): ${doctor.stdout}`);
      assert.ok(["pass", "warn"].includes(verdict("wal") ?? ""), `WAL chains (${ctx}): ${doctor.stdout}`);
      assert.ok(out.killsWhileRunning >= 3, `most kills land while running (${ctx})`);
      assert.ok(
        (await listRuns(new Workspace(s.sdd))).length > out.killsWhileRunning,
        `one WAL run per start (${ctx})`,
      );
    } finally {
      await cleanup();
    }
  }));
