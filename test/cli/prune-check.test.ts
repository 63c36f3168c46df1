/**
 * `dr list --check` after our own retention: backups that `dr prune` or `dr schedule` deleted are
 * recorded as pruned in the audit chain, so the check passes; a backup deleted behind our back is
 * still `missing` (exit 1).
 */
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

test("dr list --check passes after dr prune and dr schedule's prune; fails for a deletion behind our back", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-prune-check-");
  t.after(cleanup);
  const env = envFor(dir);
  const run = (args: string[]) => runCli(args, { cwd: dir, env });
  assert.equal((await run(["init"])).code, 0);
  await addTask(new Workspace(path.join(dir, ".sdd")), { title: "one", command: "true" });
  assert.equal((await run(["start", "--until-idle"])).code, 0);
  const at = path.join(dir, "backups");
  const statuses = async (): Promise<{ code: number | null; found: string[] }> => {
    const r = await run(["--json", "dr", "list", "--at", at, "--check"]);
    return { code: r.code, found: JSON.parse(r.stdout).check.map((f: { status: string }) => f.status) };
  };
  for (let i = 0; i < 3; i++) {
    const b = await run(["dr", "backup", "--to-dir", at]);
    assert.equal(b.code, 0, b.stderr);
  }
  assert.deepEqual(await statuses(), { code: 0, found: ["ok", "ok", "ok"] });

  const pruned = await run(["--json", "dr", "prune", "--at", at, "--keep-last", "1"]);
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.equal(JSON.parse(pruned.stdout).deleted, 2);
  assert.deepEqual(await statuses(), { code: 0, found: ["ok"] });

  const scheduled = await run([
    "dr",
    "schedule",
    "--every",
    "1h",
    "--to-dir",
    at,
    "--keep-last",
    "1",
    "--once",
  ]);
  assert.equal(scheduled.code, 0, scheduled.stderr);
  assert.match(scheduled.stdout, /prune kept 1 deleted 1/);
  assert.deepEqual(await statuses(), { code: 0, found: ["ok"] });

  // Deleted behind our back: no prune recorded it.
  for (const name of await readdir(at)) await rm(path.join(at, name));
  assert.deepEqual(await statuses(), { code: 1, found: ["missing"] });
});
