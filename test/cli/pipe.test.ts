/**
 * A reader that stops early (`| head`, `| grep -q`) closes stdout's pipe. Every command that can
 * print more than a screen is run with stdout a pipe whose reader is gone: no stack, no noise on
 * stderr, the command's own exit code (0 on success), and work that changes state is finished.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { runCli, runCliWithClosedStdout, runMain, scratchDir, envFor, CLI_ARGV, cliEnv } from "../helpers.js";

test("a closed stdout ends every long listing quietly with the command's own exit code", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-pipe-");
  t.after(cleanup);
  const env = envFor(dir);
  const run = (args: string[]) => runCli(args, { cwd: dir, env });
  assert.equal((await run(["init"])).code, 0);
  const ws = new Workspace(path.join(dir, ".sdd"));
  for (let i = 0; i < 3; i++) await addTask(ws, { title: `done ${i}`, command: "true" });
  const started = await run(["start", "--until-idle"]);
  assert.equal(started.code, 0, started.stderr);
  assert.equal((await run(["checkpoint"])).code, 0);
  // More than a screen of open tasks for `task list` and `status`.
  for (let i = 0; i < 80; i++) await addTask(ws, { title: `open task ${i}`, command: "true" });
  assert.equal((await run(["dr", "backup", "--to", "b.tar.gz"])).code, 0);

  const cases: string[][] = [
    ["status"],
    ["status", "--json"],
    ["task", "list"],
    ["task", "list", "--json"],
    ["doctor"],
    ["doctor", "--json"],
    ["wal", "show"],
    ["wal", "show", "--json"],
    ["wal", "verify"],
    ["audit", "verify"],
    ["checkpoint", "list"],
    ["dr", "restore", "--from", "b.tar.gz", "--dry-run"],
    ["dr", "backup", "--to", "unused.tar.gz", "--dry-run"],
    ["dr", "verify", "--from", "b.tar.gz"],
    ["dr", "list", "--at", "."],
    ["dr", "runbook"],
    ["--help"],
    ["dr", "backup", "--help"],
  ];
  for (const args of cases) {
    // What a reader that reads it all gets: main() in this process, its output captured (the
    // same command, workspace and environment). The real process is the one with the closed pipe.
    const piped = await runMain(args, { cwd: dir, env });
    const closed = await runCliWithClosedStdout(args, { cwd: dir, env });
    const what = `bernstein ${args.join(" ")}`;
    assert.ok(piped.stdout.length > 0, `${what} prints something`);
    assert.equal(closed.signal, null, what);
    assert.equal(closed.code, piped.code, `${what}: the exit code of a full read (${closed.stderr})`);
    assert.equal(closed.stderr, piped.stderr, `${what}: nothing more on stderr, no stack`);
    // doctor passes here; it is exit 0 like any command that succeeded.
    if (args.join(" ") === "doctor") assert.equal(closed.code, 0, what);
  }

  // A command that changes state finishes its work: the reader going away does not cut a backup.
  const backup = await runCliWithClosedStdout(["dr", "backup", "--to", "c.tar.gz", "--verify"], {
    cwd: dir,
    env,
  });
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(existsSync(path.join(dir, "c.tar.gz")));
  const verify = await run(["dr", "verify", "--from", "c.tar.gz", "--json"]);
  assert.equal(verify.code, 0, verify.stdout);

  // A usage error still says so (stderr is open) with its own code.
  const usage = await runCliWithClosedStdout(["task", "list", "--state", "nope", "--json"], {
    cwd: dir,
    env,
  });
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^bernstein: task list: unknown state nope[^\n]*\n$/);
});

test("stdout that cannot be written for another reason (a full disk) is exit 6, one line", async (t) => {
  if (!existsSync("/dev/full")) {
    t.skip("no /dev/full here");
    return;
  }
  const { dir, cleanup } = await scratchDir("bernstein-pipe-");
  t.after(cleanup);
  const env = { ...process.env, BERNSTEIN_SDD: undefined, HOME: dir };
  assert.equal((await runCli(["init"], { cwd: dir, env })).code, 0);
  const full = openSync("/dev/full", "w");
  try {
    const r = spawnSync(process.execPath, [...CLI_ARGV, "status"], {
      cwd: dir,
      env: cliEnv(env),
      stdio: ["ignore", full, "pipe"],
    });
    assert.equal(r.status, 6);
    assert.equal(r.stderr.toString(), "bernstein: cannot write the output: no space left on device\n");
  } finally {
    closeSync(full);
  }
});
