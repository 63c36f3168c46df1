/**
 * A `dr restore` that is refused says so in one line and has not said that it started: a
 * target held by a live process (exit 3) or a destination that cannot be made (exit 6) print no
 * "Restoring ..." first, and change nothing.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Workspace } from "../../src/workspace/layout.js";
import { acquireLock } from "../../src/workspace/lock.js";
import { runCli } from "../helpers.js";
import { snapshotTree, workspaceWithBackup } from "../dr/support/workspace.js";

test("dr restore into a workspace a live process holds, or where no folder can be made: the refusal alone, nothing started", async (t) => {
  const { dir, env, backup } = await workspaceWithBackup(t, "bernstein-restore-refused-");

  const target = path.join(dir, "target", ".sdd");
  assert.equal((await runCli(["--sdd", target, "dr", "restore", "--from", backup], { env })).code, 0);
  const before = snapshotTree(target);
  const lock = await acquireLock(new Workspace(target), "test: a live orchestrator");
  try {
    const held = await runCli(["--sdd", target, "dr", "restore", "--from", backup], { env });
    assert.equal(held.code, 3, held.stderr);
    assert.equal(held.stdout, "", "no 'Restoring ...' before the refusal");
    assert.match(held.stderr, /^bernstein: .* is in use by pid \d+ .*--force to have it stopped\n$/);
    const json = await runCli(["--sdd", target, "--json", "dr", "restore", "--from", backup], { env });
    assert.equal(json.code, 3);
    assert.equal(JSON.parse(json.stdout).exit_code, 3, "stdout is the one JSON document");
  } finally {
    await lock.release();
  }
  assert.deepEqual(snapshotTree(target), before);
  assert.deepEqual(readdirSync(path.dirname(target)), [".sdd"]);

  const nowhere = await runCli(["--sdd", "/proc/no-such-pid/.sdd", "dr", "restore", "--from", backup], {
    env,
  });
  assert.equal(nowhere.code, 6, nowhere.stderr);
  assert.equal(nowhere.stdout, "");
  assert.equal(nowhere.stderr.split("\n").length, 2, nowhere.stderr);
});
