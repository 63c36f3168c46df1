/**
 * `dr list --check` in a workspace restored from the newest scheduled backup: the archive was
 * taken before its own `dr.backup` event and before the prune of the same run, so the restore's
 * `dr.restore` event records both. The check passes; a backup deleted by hand after the restore
 * is still `missing` (exit 1).
 */
import assert from "node:assert/strict";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

test("dr list --check passes after restoring the newest scheduled backup; a later deletion is missing", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-restore-check-");
  t.after(cleanup);
  const env = envFor(dir);
  const ws = path.join(dir, "ws");
  await mkdir(ws);
  const run = (args: string[]) => runCli(args, { cwd: ws, env });
  assert.equal((await run(["init"])).code, 0);
  await addTask(new Workspace(path.join(ws, ".sdd")), { title: "one", command: "true" });
  assert.equal((await run(["start", "--until-idle"])).code, 0);
  await writeFile(path.join(dir, "pw"), "pw\n", { mode: 0o600 });
  const at = path.join(dir, "bk");
  const names = async () => (await readdir(at)).filter((n) => n.endsWith(".enc")).sort();
  const written: string[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await run([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--once",
      "--to-dir",
      at,
      "--keep-last",
      "2",
      "--encrypt",
      "--password-file",
      path.join(dir, "pw"),
    ]);
    assert.equal(s.code, 0, s.stderr);
    written.push(...(await names()).filter((n) => !written.includes(n)));
  }
  assert.equal(written.length, 3);
  assert.deepEqual(await names(), written.slice(1));

  // Another host: an empty folder and its own audit key path, which the restore fills.
  const fresh = path.join(dir, "new");
  await mkdir(fresh);
  const env2 = { ...env, BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "key2", "audit.key") };
  const run2 = (args: string[]) => runCli(args, { cwd: fresh, env: env2 });
  const restored = await run2([
    "--json",
    "dr",
    "restore",
    "--latest",
    "--at",
    at,
    "--password-file",
    path.join(dir, "pw"),
  ]);
  assert.equal(restored.code, 0, restored.stderr);

  const check = async () => {
    const r = await run2(["--json", "dr", "list", "--at", at, "--check"]);
    const found = JSON.parse(r.stdout).check.map((f: { name: string; status: string }) => [f.name, f.status]);
    return { code: r.code, found };
  };
  assert.deepEqual(await check(), {
    code: 0,
    found: [
      [written[1], "ok"],
      [written[2], "ok"],
    ],
  });
  assert.equal((await run2(["audit", "verify"])).code, 0);
  // The one the last run's prune deleted after the archive was taken: reported by the restore.
  assert.deepEqual(JSON.parse(restored.stdout).gone_before_restore, [written[0]]);

  // An older backup named by its file: the newer one, which its chain cannot know, is unrecorded.
  const older = path.join(dir, "older");
  await mkdir(older);
  const runOlder = (args: string[]) => runCli(args, { cwd: older, env: env2 });
  const fromFile = await runOlder([
    "--json",
    "dr",
    "restore",
    "--from",
    path.join(at, written[1]),
    "--password-file",
    path.join(dir, "pw"),
  ]);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.deepEqual(JSON.parse(fromFile.stdout).gone_before_restore, [written[0]]);
  const olderCheck = await runOlder(["--json", "dr", "list", "--at", at, "--check"]);
  assert.equal(olderCheck.code, 0, olderCheck.stdout);
  assert.deepEqual(
    JSON.parse(olderCheck.stdout).check.map((f: { name: string; status: string }) => [f.name, f.status]),
    [
      [written[1], "ok"],
      [written[2], "unrecorded"],
    ],
  );

  // Deleted by hand after the restore: the backup restored from, and the one before it.
  await rm(path.join(at, written[2]));
  assert.deepEqual(await check(), {
    code: 1,
    found: [
      [written[1], "ok"],
      [written[2], "missing"],
    ],
  });
  await rm(path.join(at, written[1]));
  assert.deepEqual(await check(), {
    code: 1,
    found: [
      [written[1], "missing"],
      [written[2], "missing"],
    ],
  });
});
