/**
 * `bernstein checkpoint` beside a running orchestrator: the checkpoint is written, but its audit
 * event is not appended (the orchestrator is the audit chain's one writer; an event of ours would
 * fork the chain at the orchestrator's next entry), and a warning says so.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { listStateFolder } from "../../src/orchestrator/backlog-folders.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir, untilGate, waitFor } from "../helpers.js";

test("checkpoint beside a running orchestrator leaves the audit chain intact", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-checkpoint-running-");
  const env = envFor(dir);
  const run = (args: string[]) => runCli(args, { cwd: dir, env });
  t.after(async () => {
    await run(["stop", "--force", "--timeout", "1"]);
    await cleanup();
  });
  assert.equal((await run(["init"])).code, 0);
  const ws = new Workspace(path.join(dir, ".sdd"));
  const gate = path.join(dir, "gate");
  await addTask(ws, { id: "gated", title: "gated", command: untilGate(gate) });
  const started = await run(["start", "--detach", "--poll", "50"]);
  assert.equal(started.code, 0, started.stderr);
  await waitFor("the task claimed", async () => (await listStateFolder(ws, "claimed")).length === 1);

  const cp = await run(["checkpoint", "--json"]);
  assert.equal(cp.code, 0, cp.stderr);
  const doc = JSON.parse(cp.stdout);
  assert.ok(existsSync(doc.file), "the checkpoint is written");
  assert.equal(doc.audit.written, false);
  assert.match(cp.stderr, /^warning: checkpoint written but not audited: pid \d+ .*holds the workspace/m);

  // The orchestrator appends its next audit events (task completed, run stopped) after ours.
  await writeFile(gate, "");
  await waitFor("the task done", async () => (await listStateFolder(ws, "done")).length === 1);
  assert.equal((await run(["stop"])).code, 0);
  const verified = await run(["audit", "verify"]);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);

  // With no orchestrator running, checkpoint audits its event as before.
  const alone = await run(["checkpoint", "--json"]);
  assert.equal(alone.code, 0, alone.stderr);
  assert.equal(JSON.parse(alone.stdout).audit.written, true);
  assert.equal((await run(["audit", "verify"])).code, 0);
});
