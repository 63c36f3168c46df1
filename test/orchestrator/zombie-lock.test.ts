/**
 * An orchestrator SIGKILLed under a parent that never reaps it stays a zombie: it holds the
 * workspace lock no more than a process that is gone. `status` says it is not running, `doctor`
 * reports a stale lock, `stop` returns at once and `start` takes the lock over.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { readStatusFile } from "../../src/orchestrator/control.js";
import { CLI_ARGV, cliEnv, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const processState = async (pid: number) =>
  (await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")).replace(/^.*\) /s, "").slice(0, 1);

test(
  "a zombie orchestrator does not hold the workspace lock",
  { skip: process.platform !== "linux" },
  async () => {
    const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-zombie-");
    // `sleep` becomes the orchestrator's parent (exec) and never waits for it.
    const parent = spawn(
      "sh",
      [
        "-c",
        '"$@" >/dev/null 2>&1 & exec sleep 600',
        "sh",
        process.execPath,
        ...CLI_ARGV,
        "--sdd",
        sdd,
        "start",
        "--poll",
        "20",
      ],
      { cwd: dir, env: cliEnv(env), stdio: "ignore" },
    );
    const parentGone = new Promise((r) => parent.on("exit", r));
    try {
      const running = await waitFor(
        "the orchestrator running",
        async () => {
          const s = await readStatusFile(ws);
          return s?.state === "running" ? s : undefined;
        },
        { exited: parentGone },
      );
      process.kill(running.pid, "SIGKILL");
      await waitFor("the orchestrator a zombie", async () => (await processState(running.pid)) === "Z");

      const status = await cli("status", "--json");
      assert.equal(status.code, 0, status.stderr);
      assert.equal(
        (JSON.parse(status.stdout) as { orchestrator: { running: boolean } }).orchestrator.running,
        false,
      );

      const doctor = await cli("doctor", "--json");
      const lock = (
        JSON.parse(doctor.stdout) as { checks: { name: string; verdict: string; detail: string }[] }
      ).checks.find((c) => c.name === "lock")!;
      assert.equal(lock.verdict, "warn", lock.detail);
      assert.match(lock.detail, /stale lock/);

      const stop = await cli("stop", "--json");
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal((JSON.parse(stop.stdout) as { running: boolean }).running, false);

      const start = await cli("start", "--until-idle");
      assert.equal(start.code, 0, start.stderr);
      assert.match(start.stderr, /stale/);
    } finally {
      parent.kill("SIGKILL");
      await parentGone;
      await cleanup();
    }
  },
);
