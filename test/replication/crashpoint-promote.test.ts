/**
 * The crash point a QUORUM failover most often leaves behind: the leader dies between a claim's
 * intent (acknowledged) and its commit. The promoted follower's WAL ends in that orphaned claim;
 * `start` on it must replay it (re-queue the task) without a failure, close the old run and finish
 * the backlog with every command run once. The leader runs under ALL so that both followers hold
 * the intent whatever the timing (under QUORUM one of them may lag, and the promotion needs both).
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { NO_TASKS, runCli } from "../helpers.js";
import {
  makeToken,
  portOf,
  relay,
  type Relay,
  startFollower,
  startReplicatedOrchestrator,
  scratchWithProcs,
} from "./support/procs.js";

test(
  "SIGKILL at task_claimed:after_action on a replicated leader, promote a follower: start replays the orphaned claim",
  { timeout: 180_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-crashpoint-");
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    Object.assign(process.env, env); // the followers (children of this process) too
    const { file: tokenFile } = await makeToken(dir);
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    const { workspace: lws } = await initWorkspace(sdd("L"));
    const ids = ["p1", "p2", "p3"];
    for (const id of ids) {
      await addTask(lws, { id, title: id, command: `echo ${id} >> ${path.join(dir, "results.txt")}` });
    }
    const [ra, rb] = [await relay(t), await relay(t)];
    const { proc: leader, url: leaderUrl } = await startReplicatedOrchestrator({
      sdd: sdd("L"),
      tokenFile,
      followers: { a: ra.url, b: rb.url },
      ackPolicy: "ALL",
      maxAgents: 1,
      ackTimeoutMs: 60000,
      cwd: dir,
      env: { ...env, BERNSTEIN_CRASH_AT: "task_claimed:after_action" },
      onSpawn: (p) => procs.push(p),
    });
    const follow = async (region: string, to: Relay) => {
      const f = await startFollower({
        leader: leaderUrl,
        region,
        sdd: sdd(region.toUpperCase()),
        tokenFile,
        onSpawn: (p) => procs.push(p),
      });
      to.to(portOf(f.url));
      return f;
    };
    const [a, b] = await Promise.all([follow("a", ra), follow("b", rb)]);
    // The claim's intent needs both acknowledgements before its action runs: the crash proves the
    // followers had it.
    const exit = await leader.exited;
    assert.equal(exit.signal, "SIGKILL", leader.stderr);

    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const pr = await runCli(
      ["--sdd", sdd("A"), "--json", "dr", "promote", "--token-file", tokenFile, "--peer", b.url],
      { env },
    );
    assert.equal(pr.code, 0, pr.stderr + pr.stdout);
    b.proc.kill("SIGTERM");
    await b.proc.exited;

    const fin = await runCli(
      ["--sdd", sdd("A"), "--json", "start", "--until-idle", "--poll", "50", "--max-agents", "1"],
      { env, cwd: path.join(dir, "A") },
    );
    assert.equal(fin.code, 0, fin.stderr);
    const doc = JSON.parse(fin.stdout);
    assert.equal(doc.recovery.replay.failed, 0, JSON.stringify(doc.recovery.replay.failures));
    assert.equal(doc.recovery.orphaned_claims_requeued, 1);
    assert.deepEqual(doc.counts, { ...NO_TASKS, done: ids.length });
    const walNames = await readdir(path.join(sdd("A"), "runtime", "wal"));
    const open = walNames
      .filter((n) => n.endsWith(".wal.jsonl"))
      .filter((n) => !walNames.includes(n.replace(/\.jsonl$/, ".closed")));
    assert.deepEqual(open, [], "the crashed leader's run was replayed and closed");
    const ran = (await readFile(path.join(dir, "results.txt"), "utf8")).split("\n").filter(Boolean).sort();
    assert.deepEqual(ran, ids, "every command ran exactly once");
  },
);
