/**
 * The backlog and the ledger against the WAL: `doctor` fails when a task the WAL created has no
 * file or the ledger lacks rows of usage commits, and `start` writes them from the WAL (without
 * running anything again).
 */
import assert from "node:assert/strict";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask, readTaskFile } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

interface Check {
  name: string;
  verdict: string;
  detail: string;
  fix: string;
}

test("doctor fails on a task file or ledger rows the WAL implies but the workspace lacks; start writes them from the WAL", async (t) => {
  const s = await scratchDir("bernstein-materialize-");
  t.after(s.cleanup);
  const sdd = path.join(s.dir, ".sdd");
  const { workspace: ws } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: s.dir, env });
  const results = path.join(s.dir, "results.txt");
  for (const id of ["m-1", "m-2", "m-3"]) {
    await addTask(ws, {
      id,
      title: `task ${id}`,
      command: `echo ${id} >> ${results}; echo '{"cost_usd": 0.25, "model": "m1"}'`,
      body: `Why ${id}: a body that must survive.\n`,
    });
  }
  const first = await cli("start", "--until-idle", "--poll", "50");
  assert.equal(first.code, 0, first.stderr);
  assert.equal((await cli("doctor")).code, 0);

  // What a promotion without the newer files looked like: one task file gone, one in the folder of
  // an older state, two ledger rows missing.
  const done = (id: string) => path.join(ws.backlogDir("done"), `${id}.md`);
  const spec2 = await readTaskFile(done("m-2"), "done");
  await rm(done("m-2"));
  await rename(done("m-3"), path.join(ws.backlogDir("open"), "m-3.md"));
  const rows = (await readFile(ws.costLedger, "utf8")).split("\n").filter(Boolean);
  assert.equal(rows.length, 3);
  await writeFile(ws.costLedger, rows[0] + "\n");

  const doctor = await cli("doctor", "--json");
  assert.equal(doctor.code, 1, doctor.stdout);
  const checks = JSON.parse(doctor.stdout).checks as Check[];
  const byName = (n: string) => checks.find((c) => c.name === n)!;
  assert.equal(byName("tasks_from_wal").verdict, "fail");
  assert.match(
    byName("tasks_from_wal").detail,
    /1 task\(s\) created in the WAL have no task file .*: m-2 \(done\)/,
  );
  assert.equal(byName("folders").verdict, "warn");
  assert.match(byName("folders").detail, /m-3 \(file in open, state done\)/);
  assert.equal(byName("ledger").verdict, "fail");
  assert.match(
    byName("ledger").detail,
    /^2 usage\(s\) in the WAL have no row: agent m-\d#\d+ \(task m-\d, run run-/,
  );
  assert.equal(byName("ledger").fix, "`bernstein start` writes the missing rows from the WAL");
  assert.equal(
    (JSON.parse((await cli("status", "--json")).stdout) as { tasks: { done: number } }).tasks.done,
    1,
  );

  const again = await cli("start", "--until-idle", "--poll", "50");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /wrote 1 task file\(s\) and 2 ledger row\(s\) from the WAL .*: m-2/);
  assert.deepEqual(
    await readTaskFile(done("m-2"), "done"),
    { ...spec2 },
    "the task as it was added, body included",
  );
  assert.equal(
    (JSON.parse((await cli("status", "--json")).stdout) as { tasks: { done: number } }).tasks.done,
    3,
  );
  const after = await cli("doctor", "--json");
  assert.equal(after.code, 0, after.stdout);
  assert.equal(
    (JSON.parse(after.stdout).checks as Check[]).find((c) => c.name === "folders")!.verdict,
    "pass",
  );
  assert.deepEqual((await readFile(results, "utf8")).split("\n").filter(Boolean).sort(), [
    "m-1",
    "m-2",
    "m-3",
  ]);
});
