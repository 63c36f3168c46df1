/**
 * `start --replication-listen` has two writers of the audit log in one process: the orchestrator's
 * task events and the leader's replication events (here: degraded to LEADER_ONLY when the quorum's
 * only follower never answers). Both continue one chain: `audit verify` passes.
 */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeToken } from "./support/procs.js";

test("a leader's degraded event and the task events of the same start form one audit chain", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-audit-one-chain-");
  t.after(cleanup);
  const env = envFor(dir);
  const run = (args: string[]) => runCli(args, { cwd: dir, env });
  assert.equal((await run(["init"])).code, 0);
  const ws = new Workspace(path.join(dir, ".sdd"));
  for (let i = 0; i < 3; i++) await addTask(ws, { title: `task ${i}`, command: "true" });
  const { file: tokenFile } = await makeToken(dir);
  const started = await run([
    "start",
    "--until-idle",
    "--replication-listen",
    "127.0.0.1:0",
    "--token-file",
    tokenFile,
    "--ack-policy",
    "QUORUM",
    // Port 1: nothing listens there, the follower never acknowledges.
    "--follower",
    "east=http://127.0.0.1:1",
    "--ack-timeout",
    "100",
    "--on-ack-timeout",
    "degrade",
  ]);
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stdout + started.stderr, /DEGRADED to LEADER_ONLY/);
  const events: string[] = [];
  for (const name of (await readdir(ws.auditDir)).filter((n) => n.endsWith(".jsonl")).sort())
    for (const line of (await readFile(path.join(ws.auditDir, name), "utf8")).split("\n").filter(Boolean))
      events.push(JSON.parse(line).event_type as string);
  assert.ok(events.includes("replication_degraded"), events.join(", "));
  assert.ok(events.includes("task.completed"), events.join(", "));
  const verified = await run(["audit", "verify"]);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
});
