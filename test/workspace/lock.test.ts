import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ExitCode, UserError } from "../../src/errors/errors.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { acquireLock, processStartTime, readLock } from "../../src/workspace/lock.js";
import { scratchDir } from "../helpers.js";

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  return child.pid!;
}

test("the lock is taken, refused to a second writer naming the holder, and released", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    const lock = await acquireLock(workspace, "start");
    assert.equal(lock.tookOver, undefined);
    const onDisk = JSON.parse(await readFile(workspace.lockFile, "utf8"));
    assert.equal(onDisk.pid, process.pid);
    assert.equal(onDisk.hostname, os.hostname());
    assert.equal(onDisk.start_time, processStartTime(process.pid));

    const err = await acquireLock(workspace, "start").then(
      () => assert.fail("second acquire must be refused"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UserError);
    assert.equal(err.exitCode, ExitCode.LOCKED);
    assert.equal(err.exitCode, 3);
    assert.match(err.message, new RegExp(`pid ${process.pid} on ${os.hostname()} \\(start\\)`));
    assert.doesNotMatch(err.message, /\n/);

    await lock.release();
    assert.deepEqual(await readLock(workspace), { state: "free" });
    const again = await acquireLock(workspace);
    await again.release();
  } finally {
    await cleanup();
  }
});

test("a lock held by a dead pid is stale and taken over with a warning", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    const pid = await deadPid();
    await writeFile(
      workspace.lockFile,
      JSON.stringify({ pid, start_time: "1", hostname: os.hostname(), acquired_at: "2026-01-01T00:00:00Z" }),
    );
    assert.equal((await readLock(workspace)).state, "stale");
    const lock = await acquireLock(workspace);
    assert.match(lock.tookOver ?? "", new RegExp(`took over stale lock of pid ${pid}.*not running`));
    assert.equal(JSON.parse(await readFile(workspace.lockFile, "utf8")).pid, process.pid);
    await lock.release();
  } finally {
    await cleanup();
  }
});

test("the temp file of a taker killed before its rename is removed by the next acquire", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    const runtime = path.dirname(workspace.lockFile);
    const dead = path.join(runtime, `.bernstein.pid.tmp-${await deadPid()}-0badc0de`);
    const live = path.join(runtime, `.bernstein.pid.tmp-${process.pid}-0badc0de`);
    const other = path.join(runtime, `.agents.json.tmp-${await deadPid()}-0badc0de`);
    for (const f of [dead, live, other]) await writeFile(f, "{");
    const lock = await acquireLock(workspace);
    assert.ok(!existsSync(dead));
    assert.ok(existsSync(live), "a live writer's temp file is its own business");
    assert.ok(existsSync(other), "only the lock's temp files are the lock's business");
    await lock.release();
  } finally {
    await cleanup();
  }
});

test("a live pid with another start time (pid reuse) is stale", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    await writeFile(
      workspace.lockFile,
      JSON.stringify({ pid: process.pid, start_time: "1", hostname: os.hostname(), acquired_at: "x" }),
    );
    const lock = await acquireLock(workspace);
    assert.match(lock.tookOver ?? "", /now belongs to another process/);
    await lock.release();
  } finally {
    await cleanup();
  }
});

test("an unreadable lock file is replaced with a warning", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    await writeFile(workspace.lockFile, "{torn");
    const lock = await acquireLock(workspace);
    assert.match(lock.tookOver ?? "", /unreadable/);
    await lock.release();
  } finally {
    await cleanup();
  }
});

test("a live holder in another process is refused with exit 3", async () => {
  const { dir, cleanup } = await scratchDir();
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    const { workspace } = await initWorkspace(`${dir}/.sdd`);
    await writeFile(
      workspace.lockFile,
      JSON.stringify({
        pid: child.pid,
        start_time: processStartTime(child.pid!),
        hostname: os.hostname(),
        acquired_at: "2026-01-01T00:00:00Z",
        command: "start",
      }),
    );
    await assert.rejects(acquireLock(workspace), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.exitCode, 3);
      assert.match(e.message, new RegExp(`locked by pid ${child.pid}`));
      return true;
    });
    // The holder's lock file is untouched.
    assert.equal(JSON.parse(await readFile(workspace.lockFile, "utf8")).pid, child.pid);
  } finally {
    child.kill("SIGKILL");
    await cleanup();
  }
});
