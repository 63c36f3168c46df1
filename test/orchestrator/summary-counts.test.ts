/**
 * `start`'s summary counts the tasks as `status` does: the backlog folders, so a task that only a
 * file holds (the Python backup's done task T-000, never in the WAL) counts in both or in neither.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { PYTHON_REFERENCE, envFor, runCli, scratchDir } from "../helpers.js";

test("after restoring the Python backup and adding a task, start's summary (text and --json) counts what status counts", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-summary-counts-");
  t.after(cleanup);
  const env = envFor(dir);
  const sdd = path.join(dir, "ws", ".sdd");
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: dir, env });
  const from = path.join(PYTHON_REFERENCE, "backup-plain.tar.gz");
  assert.equal((await cli("dr", "restore", "--from", from)).code, 0);
  assert.equal((await cli("task", "add", "one more", "--command", "true", "--id", "N1")).code, 0);

  const status = async () => {
    const r = await cli("status", "--json");
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { tasks: Record<string, number> }).tasks;
  };
  const run = await cli("start", "--until-idle", "--json");
  // The backup's open task T-001 has no --command for the default agent: it fails in this run.
  assert.equal(run.code, 1, run.stderr);
  const tasks = await status();
  assert.ok(tasks.done! >= 2, `the restored done task and the new one: ${JSON.stringify(tasks)}`);
  assert.deepEqual((JSON.parse(run.stdout) as { counts: Record<string, number> }).counts, tasks);

  const text = await cli("start", "--until-idle");
  assert.equal(text.code, 0, text.stderr);
  const statusLine = (await cli("status")).stdout.split("\n").find((l) => l.startsWith("tasks: "))!;
  assert.match(text.stdout, new RegExp(`; all tasks: ${statusLine.slice("tasks: ".length)}; \\d+ decisions`));
});
