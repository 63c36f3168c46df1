/**
 * End to end: ten backups taken while `bernstein start` is busy each restore
 * to a workspace that passes `doctor`, and `start` on it completes the backlog. It takes minutes,
 * so it runs in `npm run soak` (bench/soak.ts), not `npm test`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { addTask } from "../../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../../src/workspace/layout.js";
import { runCli, scratchDir, CLI_ARGV, cliEnv } from "../../helpers.js";

const TASKS = 24;
const BACKUPS = 10;

test(`${BACKUPS} backups during a busy start each restore to a workspace that passes doctor; start on it completes the backlog`, async () => {
  const { dir, cleanup } = await scratchDir();
  const env = {
    BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "key", "audit.key"),
    BERNSTEIN_SDD: undefined,
    HOME: dir,
  };
  const { workspace: ws } = await initWorkspace(path.join(dir, "w", ".sdd"));
  for (let i = 0; i < TASKS; i++) {
    await addTask(ws, { id: `T-${String(i).padStart(3, "0")}`, title: `task ${i}`, command: "sleep 0.4" });
  }
  const start = spawn(
    process.execPath,
    [...CLI_ARGV, "start", "--sdd", ws.root, "--max-agents", "1", "--poll", "50"],
    {
      env: cliEnv(env),
      stdio: "ignore",
    },
  );
  try {
    // Wait until it is working (a task claimed).
    for (let i = 0; i < 400 && readdirSync(ws.p("backlog", "claimed")).length === 0; i++) await sleep(25);
    const archives: string[] = [];
    for (let i = 0; i < BACKUPS; i++) {
      const dest = path.join(dir, `b${i}.tar.gz`);
      const r = await runCli(["dr", "backup", "--to", dest, "--sdd", ws.root, "--json"], { env });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(
        out.snapshot.method,
        "paused",
        `backup ${i} was not paused: ${JSON.stringify(out.snapshot)}`,
      );
      archives.push(dest);
    }
    const doneWhileBacking = readdirSync(ws.p("backlog", "done")).length;
    assert.ok(doneWhileBacking < TASKS, "the orchestrator was still busy during the backups");
  } finally {
    start.kill("SIGKILL");
  }
  try {
    for (let i = 0; i < BACKUPS; i++) {
      const target = path.join(dir, `r${i}`, ".sdd");
      const r = await runCli(["dr", "restore", "--from", path.join(dir, `b${i}.tar.gz`), "--sdd", target], {
        env,
      });
      assert.equal(r.code, 0, r.stderr);
      const doctor = await runCli(["doctor", "--workspace", target], { env });
      assert.equal(
        doctor.code,
        0,
        `backup ${i}: doctor on the restored copy:\n${doctor.stdout}${doctor.stderr}`,
      );
      const again = await runCli(
        ["start", "--sdd", target, "--until-idle", "--max-agents", "8", "--poll", "20"],
        { env, timeoutMs: 120_000 },
      );
      assert.equal(again.code, 0, `backup ${i}: start on the restored copy: ${again.stdout}${again.stderr}`);
      const done = readdirSync(path.join(target, "backlog", "done")).length;
      assert.equal(done, TASKS, `backup ${i}: ${done} of ${TASKS} tasks done after start`);
      for (const state of ["open", "claimed"])
        assert.deepEqual(readdirSync(path.join(target, "backlog", state)), [], `${state} is empty`);
    }
  } finally {
    await cleanup();
  }
});
