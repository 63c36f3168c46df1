/**
 * `dr list --check` after our own retention: backups that `dr prune` or `dr schedule` deleted are
 * recorded as pruned in the audit chain, so the check passes; a backup deleted behind our back is
 * still `missing` (exit 1).
 */
import assert from "node:assert/strict";
import { appendFile, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, runMain, scratchDir } from "../helpers.js";
import { keyPair } from "../dr/support/age-keys.js";

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

  // `dr backup --to DIR/<name>` (plain, .age, .enc): checked by its own name, which the catalogue
  // lists as foreign; was "missing ... gone now" while the file was there.
  const plain = path.join(dir, "plain");
  await mkdir(plain);
  const { recipient } = await keyPair(dir, "id.txt", false, "main");
  await writeFile(path.join(dir, "pw"), "pw1\n", { mode: 0o600 });
  for (const extra of [[], ["--recipient", recipient], ["--encrypt", "--password-file", "pw"]]) {
    const b = await runMain(["dr", "backup", "--to", path.join(plain, `m${extra.length}.tar.gz`), ...extra], {
      cwd: dir,
      env,
    });
    assert.equal(b.code, 0, b.stderr);
  }
  assert.deepEqual(await readdir(plain).then((n) => n.filter((f) => !f.endsWith(".sha256")).sort()), [
    "m0.tar.gz",
    "m2.tar.gz.age",
    "m3.tar.gz.enc",
  ]);
  const listed = await run(["--json", "dr", "list", "--at", plain, "--check"]);
  assert.equal(listed.code, 0, listed.stdout);
  assert.deepEqual(
    JSON.parse(listed.stdout).check.map((f: { name: string; status: string }) => [f.name, f.status]),
    [
      ["m0.tar.gz", "ok"],
      ["m2.tar.gz.age", "ok"],
      ["m3.tar.gz.enc", "ok"],
    ],
  );
  await appendFile(path.join(plain, "m0.tar.gz"), "x");
  const changed = await runMain(["--json", "dr", "list", "--at", plain, "--check"], { cwd: dir, env });
  assert.equal(changed.code, 1);
  assert.equal(JSON.parse(changed.stdout).check[0].status, "replaced");
});
