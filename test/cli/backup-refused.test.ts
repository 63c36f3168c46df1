/**
 * A `dr backup --to FILE` that is refused says so in one line and has not said that it started:
 * a folder that is not there, or a backup already at FILE (exit 6), print no "Backing up ..."
 * first, and write nothing. A dry run is refused the same way.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";

test("dr backup to a folder that is not there, or over a backup: the refusal alone", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-refused-");
  t.after(cleanup);
  await makeSmallWorkspace(dir);
  const cli = (...args: string[]) => runCli(args, { cwd: dir, env: envFor(dir) });
  assert.equal((await cli("dr", "backup", "--to", "b.tar.gz")).code, 0);
  const before = readFileSync(path.join(dir, "b.tar.gz"));
  for (const [to, says] of [
    ["nowhere/b.tar.gz", /^bernstein: cannot write nowhere\/b\.tar\.gz: folder nowhere does not exist\n$/],
    [
      "b.tar.gz",
      /^bernstein: b\.tar\.gz already exists; not replacing a backup \(pass --force to replace it\)\n$/,
    ],
  ] as const) {
    // A dry run reports the refusal the real run would make.
    for (const dry of [[], ["--dry-run"]]) {
      const r = await cli("dr", "backup", "--to", to, ...dry);
      assert.equal(r.code, 6, r.stderr);
      assert.equal(r.stdout, "", "no 'Backing up ...' before the refusal");
      assert.match(r.stderr, says);
      const json = await cli("--json", "dr", "backup", "--to", to, ...dry);
      assert.equal(json.code, 6);
      assert.equal(JSON.parse(json.stdout).exit_code, 6, "stdout is the one JSON document");
    }
  }
  assert.deepEqual(readFileSync(path.join(dir, "b.tar.gz")), before);
});

test("dr backup --dry-run counts in words that agree with the number: 1 folder", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-dry-words-");
  t.after(cleanup);
  const { ws } = await makeSmallWorkspace(dir);
  mkdirSync(path.join(ws.root, "logs"), { recursive: true });
  const r = await runCli(["dr", "backup", "--to", "b.tar.gz", "--dry-run"], { cwd: dir, env: envFor(dir) });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Excluded \(1 folder, \d+ files\):$/m);
});
