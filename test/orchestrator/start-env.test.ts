/**
 * The environment `start` reads is checked like its flags: a bad value is one line (exit 2, the
 * --json error document) before the lock, a run or a background process exists.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import { Orchestrator } from "../../src/orchestrator/orchestrator.js";
import { runCli } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("a bad BERNSTEIN_REPLAY_STALE_AFTER refuses start and start --detach with one line, writing nothing", async () => {
  const { dir, sdd, ws, env, cleanup } = await orchestratorWorkspace("bernstein-start-env-");
  try {
    for (const value of ["1h", "abc", "-5", " "]) {
      for (const mode of [["--until-idle"], ["--detach"]]) {
        const r = await runCli(["--sdd", sdd, "--json", "start", ...mode], {
          cwd: dir,
          env: { ...env, BERNSTEIN_REPLAY_STALE_AFTER: value },
        });
        const what = `${value} ${mode.join(" ")}: ${r.stderr}`;
        assert.equal(r.code, 2, what);
        const doc = JSON.parse(r.stdout) as { ok: boolean; error: string; exit_code: number };
        assert.equal(doc.ok, false);
        assert.equal(doc.exit_code, 2);
        assert.equal(
          doc.error,
          `BERNSTEIN_REPLAY_STALE_AFTER must be a number of seconds >= 0 (such as 3600), got ${JSON.stringify(value)}`,
        );
        assert.deepEqual(r.stderr.split("\n").filter(Boolean), [`bernstein: ${doc.error}`], what);
      }
    }
    assert.deepEqual(await readdir(ws.walDir), [], "no run file");
    assert.equal(existsSync(path.join(ws.runtimeDir, "orchestrator.json")), false);
    assert.equal(existsSync(ws.lockFile), false);
    assert.equal(existsSync(path.join(ws.logsDir, "orchestrator.log")), false, "no background process ran");
  } finally {
    await cleanup();
  }
});

test("Orchestrator.open refuses a bad BERNSTEIN_REPLAY_STALE_AFTER before it takes the lock or opens a run", async () => {
  const { ws, cleanup } = await orchestratorWorkspace("bernstein-start-env-open-");
  const before = process.env.BERNSTEIN_REPLAY_STALE_AFTER;
  try {
    process.env.BERNSTEIN_REPLAY_STALE_AFTER = "soon";
    await assert.rejects(
      Orchestrator.open(ws, { untilIdle: true }),
      (err: unknown) =>
        err instanceof UserError && err.exitCode === 2 && /BERNSTEIN_REPLAY_STALE_AFTER/.test(err.message),
    );
    assert.deepEqual(await readdir(ws.walDir), []);
    assert.equal(existsSync(ws.lockFile), false);
  } finally {
    if (before === undefined) delete process.env.BERNSTEIN_REPLAY_STALE_AFTER;
    else process.env.BERNSTEIN_REPLAY_STALE_AFTER = before;
    await cleanup();
  }
});

test("a bad BERNSTEIN_S3_CONCURRENCY or BERNSTEIN_S3_BACKOFF_MS refuses start --archive-to s3://... with one line", async () => {
  const { dir, sdd, ws, env, cleanup } = await orchestratorWorkspace("bernstein-start-env-s3-");
  try {
    // Nothing listens at the endpoint: the refusal comes before any request.
    const s3 = { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "y", AWS_REGION: "us-east-1" };
    for (const [name, value, accepts] of [
      ["BERNSTEIN_S3_CONCURRENCY", "abc", "an integer >= 1"],
      ["BERNSTEIN_S3_CONCURRENCY", "0", "an integer >= 1"],
      ["BERNSTEIN_S3_BACKOFF_MS", "-1", "an integer >= 0"],
    ] as const) {
      const r = await runCli(
        [
          "--sdd",
          sdd,
          "--json",
          "start",
          "--until-idle",
          "--archive-to",
          "s3://bucket1/wal/",
          "--archive-endpoint",
          "http://127.0.0.1:9",
        ],
        { cwd: dir, env: { ...env, ...s3, [name]: value } },
      );
      assert.equal(r.code, 2, r.stderr);
      const error = `${name}=${value}: must be ${accepts}`;
      assert.deepEqual(JSON.parse(r.stdout), { ok: false, error, exit_code: 2 });
      assert.deepEqual(r.stderr.split("\n").filter(Boolean), [`bernstein: ${error}`]);
    }
    assert.deepEqual(await readdir(ws.walDir), [], "no run file");
  } finally {
    await cleanup();
  }
});
