/**
 * A run file copied under another run id: each run is its own chain from the genesis hash, so the
 * copy verifies on its own, while the state counts its entries twice (a cost of $0.25 shows as
 * $0.50). Every check that reads all runs calls it a break naming both runs; two genuine runs and
 * a run's own prefix copy are told apart by their first entries alone.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { listRuns, repeatedRuns } from "../../src/wal/reader.js";
import { Workspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

/** Every file under `dir` with its sha256: what a refused command must leave as it was. */
async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await readdir(dir, { recursive: true })) {
    const p = path.join(dir, name);
    if ((await stat(p)).isFile())
      out.set(
        name,
        createHash("sha256")
          .update(await readFile(p))
          .digest("hex"),
      );
  }
  return out;
}

test("a copied run: wal verify, status, doctor, start, dr backup and dr verify call it a break naming both runs", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const env = { XDG_STATE_HOME: path.join(dir, "state") };
    const cli = (...a: string[]) => runCli(["--sdd", sdd, ...a], { env, cwd: dir });
    assert.equal((await cli("init")).code, 0);
    const add = await cli("task", "add", "a", "--command", `echo '{"cost_usd": 0.25}'`);
    assert.equal(add.code, 0, add.stderr);
    const started = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(started.code, 0, started.stderr);
    const ws = new Workspace(sdd);
    const [original] = await listRuns(ws);
    assert.ok(original);
    const copy = original.run_id.replace(/-[0-9a-f]{4}$/, "-ffff");
    await copyFile(original.file, ws.walFile(copy));
    const both = new RegExp(
      `${copy}: seq 0, line 1: repeated_run: repeats the entries of run ${original.run_id}`,
    );

    const verify = await cli("wal", "verify");
    assert.equal(verify.code, 1, verify.stdout);
    assert.match(verify.stdout, both);
    assert.match(verify.stdout, /WAL BROKEN/);
    const one = await cli("wal", "verify", "--run", original.run_id);
    assert.equal(one.code, 1, one.stdout);
    assert.match(one.stdout, both);
    const json = JSON.parse((await cli("--json", "wal", "verify")).stdout);
    assert.equal(json.ok, false);
    assert.deepEqual(
      json.rollbacks.map((r: { run_id: string; kind: string; recorded_by: string }) => [
        r.run_id,
        r.kind,
        r.recorded_by,
      ]),
      [[copy, "repeated_run", original.run_id]],
    );

    const status = await cli("status");
    assert.equal(status.code, 9, status.stdout + status.stderr);
    assert.match(
      status.stdout,
      new RegExp(`integrity: repeated_run: run ${copy}: repeats the entries of run ${original.run_id}`),
    );

    const doctor = await cli("doctor");
    assert.equal(doctor.code, 1);
    assert.match(
      doctor.stdout,
      new RegExp(`FAIL wal: repeated run: run ${copy}: repeats the entries of run ${original.run_id}`),
    );
    // The doubled cost is the WAL's doing, not the ledger's: every row is the usage it records.
    assert.match(doctor.stdout, /PASS ledger: 1 row\(s\), \$0\.2500, each as the WAL recorded it/);

    const before = await tree(sdd);
    const refused = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(refused.code, 9, refused.stdout + refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(
        `refusing to start: WAL of run ${copy} damaged: repeats the entries of run ${original.run_id}`,
      ),
    );
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
    assert.deepEqual(await tree(sdd), before, "a refused start changes nothing");

    const archive = path.join(dir, "bk.tar.gz");
    const backup = await cli("dr", "backup", "--to", archive);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(
      backup.stderr,
      new RegExp(
        `wal run ${copy}: damaged \\(backed up as found\\): repeats the entries of run ${original.run_id}`,
      ),
    );
    const drVerify = await cli("dr", "verify", "--from", archive);
    assert.equal(drVerify.code, 1, drVerify.stdout);
    assert.match(
      drVerify.stdout,
      new RegExp(`\\[FAIL\\] wal ${copy}: damaged: repeats the entries of run ${original.run_id}`),
    );
  } finally {
    await cleanup();
  }
});

test("two genuine runs are no repeat; a copy of a run's first entries is one", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const env = { XDG_STATE_HOME: path.join(dir, "state") };
    const cli = (...a: string[]) => runCli(["--sdd", sdd, ...a], { env, cwd: dir });
    assert.equal((await cli("init")).code, 0);
    for (const t of ["a", "b"]) {
      assert.equal((await cli("task", "add", t, "--command", "true")).code, 0);
      assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    }
    const ws = new Workspace(sdd);
    const runs = await listRuns(ws);
    assert.equal(runs.length, 2);
    assert.deepEqual(repeatedRuns(runs), []);
    const verify = await cli("wal", "verify");
    assert.equal(verify.code, 0, verify.stdout);
    assert.match(verify.stdout, /all 2 runs intact/);

    // A copy of the first two entries only: a valid chain, still the same run's entries.
    const lines = (await readFile(runs[1]!.file, "utf8")).split("\n");
    await writeFile(ws.walFile("run-prefix"), lines.slice(0, 2).join("\n") + "\n");
    const found = repeatedRuns(await listRuns(ws));
    assert.equal(found.length, 1);
    assert.equal(found[0]!.same_as, runs[1]!.run_id);
    assert.equal(found[0]!.run_id, "run-prefix");
  } finally {
    await cleanup();
  }
});
