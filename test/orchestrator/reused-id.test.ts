/**
 * A finished task's id stays the WAL's after its file is gone: `task add --id` refuses it, and a
 * file put in `open/` by hand under a finished task's id (another task, or the failed task's own
 * file moved back for a retry) is never filed away under that state without a word.
 */
import assert from "node:assert/strict";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { orchestratorWorkspace } from "./support/workspace.js";

test("a reused task id: task add refuses it; start leaves another task's file in open/ and says why", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-reused-id-");
  try {
    const out = path.join(dir, "out.txt");
    const add = await cli("task", "add", "first", "--id", "deploy", "--command", "echo first >> out.txt");
    assert.equal(add.code, 0, add.stderr);
    const first = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(first.code, 0, first.stderr);
    await rm(path.join(ws.backlogDir("done"), "deploy.md"));

    const again = await cli("task", "add", "second", "--id", "deploy", "--command", "echo second >> out.txt");
    assert.equal(again.code, 2, again.stderr);
    assert.match(
      again.stderr,
      /^bernstein: task add: id deploy is already used by a task the WAL records as done/,
    );
    assert.equal(again.stderr.trim().split("\n").length, 1, again.stderr);
    await assert.rejects(readFile(path.join(ws.backlogDir("open"), "deploy.md")), { code: "ENOENT" });

    // Written by hand instead (task add takes no lock and a file needs none).
    const hand = path.join(ws.backlogDir("open"), "deploy.md");
    await writeFile(hand, '---\nid: deploy\ntitle: second\ncommand: "echo second >> out.txt"\n---\n');
    const second = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stderr,
      /task file .*open\/deploy\.md holds another task under id deploy, which the WAL records as done: left in place, not run; .*task add/,
    );
    assert.equal(await readFile(out, "utf8"), "first\n");
    assert.match(await readFile(hand, "utf8"), /title: second/, "left where it was written");
    await assert.rejects(readFile(path.join(ws.backlogDir("done"), "deploy.md")), { code: "ENOENT" });
  } finally {
    await cleanup();
  }
});

test("a failed task's file moved back to open/ by hand: start puts it back in failed/ and says how to retry", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-retry-by-hand-");
  try {
    const add = await cli("task", "add", "flaky", "--id", "flaky", "--command", "exit 3");
    assert.equal(add.code, 0, add.stderr);
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 1);
    const failed = path.join(ws.backlogDir("failed"), "flaky.md");
    await rename(failed, path.join(ws.backlogDir("open"), "flaky.md"));

    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stderr,
      /task file .*open\/flaky\.md was moved to open\/, but task flaky is failed in the WAL and is not run again: moved back to failed\/; to run it, add it as a new task under another id/,
    );
    await readFile(failed); // back where its state is

    const reused = await cli("task", "add", "retry", "--id", "flaky", "--command", "true");
    assert.equal(reused.code, 2);
    assert.match(reused.stderr, /a task with id flaky already exists/);
  } finally {
    await cleanup();
  }
});
