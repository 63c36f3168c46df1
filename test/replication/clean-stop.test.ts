/**
 * A planned `bernstein stop` of a `start --replication-listen` leader is no disaster: its
 * follower holds the run's last entry (`orchestrator_stopped`) when `stop` returns, reports the
 * clean stop (log, `GET /status`, `dr status`, `dr runbook`) as ALERT_ONLY and writes no runbook,
 * also after a restart while the leader is down. A restarted leader is followed as before, and a
 * SIGKILLed one still makes the follower recommend a failover and write its runbook.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { ReplicationLeader } from "../../src/replication/leader.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace, Workspace } from "../../src/workspace/layout.js";
import { CLI_ARGV, cliEnv, runCli } from "../helpers.js";
import {
  Proc,
  TRANSPORT_RUN,
  eventually,
  getJson,
  leaderWorkspace,
  makeToken,
  portOf,
  relay,
  startFollower,
  scratchWithProcs,
} from "./support/procs.js";

interface FollowerDoc {
  state: string;
  leader: { stopped_cleanly: { run_id: string; seq: number; at: string; reason: string } | null };
  wal: { position: { run_id: string; seq: number } | null };
  failover: { decision: string; reasons: string[]; last_runbook: string | null };
}

/** The last entry of the newest run of a workspace's WAL. */
async function lastEntry(sdd: string): Promise<{ run_id: string; seq: number; decision_type: string }> {
  const ws = new Workspace(sdd);
  const run = (await listRuns(ws)).at(-1)!;
  let last: { seq: number; decision_type: string } | undefined;
  for await (const { entry } of readWalEntries(run.file)) last = entry;
  return { run_id: run.run_id, seq: last!.seq, decision_type: last!.decision_type };
}

async function runbooks(sdd: string): Promise<string[]> {
  return readdir(path.join(sdd, "docs", "runbooks")).catch(() => [] as string[]);
}

test(
  "a leader's clean stop: the follower says so (ALERT_ONLY, no runbook); a SIGKILL still recommends a failover",
  { timeout: 120_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-clean-stop-");
    const env = { XDG_STATE_HOME: path.join(dir, "state") };
    const { file: tokenFile, token } = await makeToken(dir);
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    const { workspace: lws } = await initWorkspace(sdd("L"));
    await addTask(lws, { id: "t1", title: "t1", command: "true" });
    // The follower keeps one leader address across the leader's restarts, as an operator's DNS name.
    const leaderAddress = await relay(t);

    const startLeader = async (): Promise<Proc> => {
      const child = spawn(
        process.execPath,
        [
          ...CLI_ARGV,
          "--sdd",
          sdd("L"),
          "start",
          "--poll",
          "50",
          "--replication-listen",
          "127.0.0.1:0",
          "--token-file",
          tokenFile,
        ],
        { stdio: ["ignore", "pipe", "pipe"], cwd: dir, env: cliEnv(env) },
      );
      const proc = new Proc(child, "leader");
      procs.push(proc);
      const serving = await proc.waitFor(
        "the leader endpoint",
        () => /replication: serving at (\S+) /.exec(proc.stderr) ?? undefined,
      );
      leaderAddress.to(portOf(serving[1]));
      return proc;
    };
    const follow = () =>
      startFollower({
        leader: leaderAddress.url,
        region: "f",
        sdd: sdd("F"),
        tokenFile,
        onSpawn: (p) => procs.push(p),
      });
    const statusOf = async (url: string) => (await getJson(`${url}/status`, token)) as unknown as FollowerDoc;

    let leader = await startLeader();
    let f = await follow();
    await eventually("the task done and replicated", async () => {
      const l = await lastEntry(sdd("L")).catch(() => undefined);
      const st = await statusOf(f.url);
      return (
        l !== undefined &&
        (await readFile(path.join(sdd("L"), "backlog", "done", "t1.md")).catch(() => null)) !== null &&
        st.wal.position?.seq === l.seq
      );
    });

    // The planned stop. When `stop` returns, the follower already holds the run's last entry.
    const stop = await runCli(["--sdd", sdd("L"), "stop"], { env, cwd: dir });
    assert.equal(stop.code, 0, stop.stderr);
    const last = await lastEntry(sdd("L"));
    assert.equal(last.decision_type, "orchestrator_stopped");
    assert.deepEqual(await lastEntry(sdd("F")), last, "the follower holds the leader's stop entry");
    await leader.exited;

    const told = new RegExp(
      `ALERT_ONLY, no runbook: leader stopped cleanly at \\S+, seq ${last.seq} of run ${last.run_id} \\(stopped\\)`,
    );
    const expectCleanStop = async (): Promise<void> => {
      await f.proc.waitFor("the clean stop in the log", () => told.test(f.proc.stderr));
      const st = await statusOf(f.url);
      assert.equal(st.failover.decision, "ALERT_ONLY", JSON.stringify(st.failover));
      assert.match(st.failover.reasons.join("\n"), /promote only if it will not come back/);
      assert.equal(st.state, "LEADER_STOPPED");
      assert.deepEqual(
        { run_id: st.leader.stopped_cleanly?.run_id, seq: st.leader.stopped_cleanly?.seq },
        { run_id: last.run_id, seq: last.seq },
      );
      assert.equal(st.failover.last_runbook, null);
      assert.deepEqual(await runbooks(sdd("F")), [], "a clean stop writes no runbook");
      const ds = await runCli(["--sdd", sdd("F"), "--json", "dr", "status", "--token-file", tokenFile], {
        env,
      });
      assert.equal(ds.code, 0, ds.stderr);
      const dj = JSON.parse(ds.stdout) as { failover: { decision: string; reasons: string[] } };
      assert.equal(dj.failover.decision, "ALERT_ONLY");
      assert.match(dj.failover.reasons.join("\n"), /leader stopped cleanly at/);
    };
    await expectCleanStop();

    // A follower started while the leader is down knows it from its own WAL.
    f.proc.kill("SIGTERM");
    await f.proc.exited;
    f = await follow();
    await expectCleanStop();
    const rb = await runCli(["--sdd", sdd("F"), "--json", "dr", "runbook", "--token-file", tokenFile], {
      env,
    });
    assert.equal(rb.code, 0, rb.stderr);
    const rj = JSON.parse(rb.stdout) as { decision: string; runbook: string };
    assert.equal(rj.decision, "ALERT_ONLY");
    const asked = await readFile(rj.runbook, "utf8");
    assert.match(asked, /\*\*No failover now\*\*/);
    assert.match(asked, /leader stopped cleanly at/);

    // The leader comes back: followed as before, nothing to do.
    leader = await startLeader();
    await eventually("the follower back to NO_ACTION", async () => {
      const st = await statusOf(f.url);
      return (
        st.failover.decision === "NO_ACTION" && st.state === "FOLLOWING" && st.leader.stopped_cleanly === null
      );
    });

    // A leader that dies is a disaster as before: FAILOVER_RECOMMENDED and a runbook.
    leader.kill("SIGKILL");
    await leader.exited;
    const runbook = await eventually("the follower's failover runbook", async () => {
      for (const name of await runbooks(sdd("F"))) {
        const text = await readFile(path.join(sdd("F"), "docs", "runbooks", name), "utf8");
        if (/Evaluation: \*\*FAILOVER_RECOMMENDED\*\*/.test(text)) return text;
      }
      return undefined;
    });
    assert.match(runbook, /leader unreachable from this follower/);
    assert.doesNotMatch(runbook, /stopped cleanly/);
    const st = await statusOf(f.url);
    assert.equal(st.failover.decision, "FAILOVER_RECOMMENDED");
    assert.equal(st.state, "LEADER_UNREACHABLE");
  },
);

test("handOver waits for every follower in contact to acknowledge the whole WAL, and no longer", async (t) => {
  const { dir } = await scratchWithProcs(t, "bernstein-repl-handover-");
  const { token } = await makeToken(dir);
  // seqs 0..4 of one run: what a stopped leader serves, its last entry included.
  const ws = await leaderWorkspace(path.join(dir, "L", ".sdd"), 5, TRANSPORT_RUN);
  const log: string[] = [];
  const leader = await ReplicationLeader.start({
    ws,
    host: "127.0.0.1",
    port: 0,
    token,
    policy: "LEADER_ONLY",
    followers: [],
    ackTimeoutMs: 60_000,
    onAckTimeout: "stop",
    log: (line) => log.push(line),
  });
  t.after(() => leader.close());
  const ack = async (region: string, seq: number): Promise<void> => {
    const res = await fetch(`${leader.url}/ack`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ region, positions: { [TRANSPORT_RUN]: seq }, integrity_error: null }),
    });
    assert.equal(res.status, 200, await res.text());
  };
  // Nobody in contact: nothing to wait for.
  assert.deepEqual(await leader.handOver(), []);

  await ack("a", 2);
  await ack("b", 4);
  let done = false;
  const handing = leader.handOver().then((left) => ((done = true), left));
  await ack("a", 3);
  // Each ack's answer comes after the leader looked at it: still one entry short.
  assert.equal(done, false, "handOver returned while follower a lacked the last entry");
  await ack("a", 4);
  assert.deepEqual(await handing, []);
  assert.deepEqual(log, []);

  // A follower that never catches up is waited for at most the given time, and named.
  await ack("c", 0);
  assert.deepEqual(await leader.handOver(50), ["c"]);
  assert.match(log.join("\n"), /before follower\(s\) c acknowledged the last entry/);
});

test("handOver waits an --ack-timeout past Node's timer limit (2^31-1 ms) for the follower, not 1 ms", async (t) => {
  const { dir } = await scratchWithProcs(t, "bernstein-repl-handover-long-");
  const { token } = await makeToken(dir);
  const ws = await leaderWorkspace(path.join(dir, "L", ".sdd"), 5, TRANSPORT_RUN);
  const log: string[] = [];
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on("warning", onWarning);
  t.after(() => process.off("warning", onWarning));
  const leader = await ReplicationLeader.start({
    ws,
    host: "127.0.0.1",
    port: 0,
    token,
    policy: "LEADER_ONLY",
    followers: [],
    ackTimeoutMs: 3_000_000_000,
    onAckTimeout: "stop",
    log: (line) => log.push(line),
  });
  t.after(() => leader.close());
  const ack = async (seq: number): Promise<void> => {
    const res = await fetch(`${leader.url}/ack`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ region: "a", positions: { [TRANSPORT_RUN]: seq }, integrity_error: null }),
    });
    assert.equal(res.status, 200, await res.text());
  };
  await ack(0);
  const handing = leader.handOver();
  await ack(4);
  assert.deepEqual(await handing, []);
  assert.deepEqual(log, []);
  assert.deepEqual(warnings, []);
});
