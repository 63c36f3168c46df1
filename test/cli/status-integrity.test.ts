/**
 * `bernstein status` on a WAL that `start` would refuse: it still prints the state (text and
 * --json) and exits 9, like `start`; a torn tail that `start` cuts is not a problem.
 */
import assert from "node:assert/strict";
import { appendFile, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

test("status exits 9 on a broken or rolled-back WAL and still prints the state; 0 on a torn tail", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-status-integrity-");
  t.after(cleanup);
  const env = envFor(dir);
  const run = (args: string[]) => runCli(args, { cwd: dir, env });
  assert.equal((await run(["init"])).code, 0);
  const ws = new Workspace(path.join(dir, ".sdd"));
  for (let i = 0; i < 3; i++) await addTask(ws, { title: `task ${i}`, command: "true" });
  const started = await run(["start", "--until-idle"]);
  assert.equal(started.code, 0, started.stderr);

  const sound = await run(["status", "--json"]);
  assert.equal(sound.code, 0, sound.stderr);
  assert.equal(JSON.parse(sound.stdout).ok, true);
  assert.deepEqual(JSON.parse(sound.stdout).integrity, []);

  const [walName] = (await readdir(ws.walDir)).filter((n) => n.endsWith(".wal.jsonl"));
  const walFile = path.join(ws.walDir, walName!);
  const good = await readFile(walFile, "utf8");
  const lines = good.split("\n");

  // An entry early in the run (the checkpoint `start` wrote at its stop covers it) no longer
  // hashes: `start` refuses this WAL.
  lines[2] = lines[2]!.replace(/"seq":2,/, '"seq":2,"edited":true,');
  await writeFile(walFile, lines.join("\n"));
  const human = await run(["status"]);
  assert.equal(human.code, 9, human.stdout + human.stderr);
  assert.match(human.stdout, /^integrity: chain_break: run \S+: seq 2, line 3: hash_mismatch: /m);
  assert.match(human.stdout, /^tasks: open 0, claimed 0, done 3, failed 0$/m, "the state is still shown");
  const json = await run(["status", "--json"]);
  assert.equal(json.code, 9);
  const doc = JSON.parse(json.stdout);
  assert.equal(doc.ok, false);
  assert.equal(doc.tasks.done, 3);
  assert.equal(doc.integrity[0].kind, "chain_break");
  assert.equal(doc.integrity[0].run_id, walName!.replace(/\.wal\.jsonl$/, ""));
  const quiet = await run(["status", "--quiet"]);
  assert.equal(quiet.code, 9);
  assert.equal(quiet.stdout, "");
  assert.match(quiet.stderr, /^bernstein: status: WAL integrity: run \S+: seq 2, line 3: [^\n]*\n$/);
  assert.equal((await run(["start", "--until-idle"])).code, 9, "start refuses the same WAL");

  // The newest entry cut off a closed run: a rollback.
  await writeFile(walFile, good.slice(0, good.lastIndexOf("\n", good.length - 2) + 1));
  const rolledBack = await run(["status", "--json"]);
  assert.equal(rolledBack.code, 9);
  assert.equal(JSON.parse(rolledBack.stdout).integrity[0].kind, "truncated");

  // A crash mid-append: the run has no closed marker and its last line is torn. `start` cuts it.
  await writeFile(walFile, good);
  await rm(path.join(ws.walDir, walName!.replace(/\.jsonl$/, ".closed")));
  await appendFile(walFile, lines[3]!.slice(0, 40));
  const torn = await run(["status"]);
  assert.equal(torn.code, 0, torn.stdout + torn.stderr);
  assert.match(torn.stdout, /torn tail \(repaired at next start\)/);
  assert.doesNotMatch(torn.stdout, /integrity/);
});
