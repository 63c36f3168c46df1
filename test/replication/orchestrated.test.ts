/**
 * With the real orchestrator: `start --replication-listen` under QUORUM with two
 * followers, SIGKILLed mid-backlog; `dr promote` of a follower gives a workspace whose chains
 * verify, `doctor` passes, and `start` on it completes the backlog.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, verifyWal } from "../../src/wal/reader.js";
import { initWorkspace, Workspace } from "../../src/workspace/layout.js";
import { CLI_ARGV, cliEnv, runCli } from "../helpers.js";
import {
  Proc,
  eventually,
  getJson,
  makeToken,
  portOf,
  relay,
  startFollower,
  startReplicatedOrchestrator,
  scratchWithProcs,
} from "./support/procs.js";

test(
  "start --replication-listen, SIGKILL, promote: doctor passes and start completes the backlog",
  { timeout: 120_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-orch-");
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    Object.assign(process.env, env); // the followers (children of this process) too
    const { file: tokenFile, token } = await makeToken(dir);
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    const { workspace: lws } = await initWorkspace(sdd("L"));
    const results = path.join(dir, "results.txt");
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const id = `r-${String(i).padStart(2, "0")}`;
      ids.push(id);
      await addTask(lws, { id, title: id, command: `echo ${id} >> ${results}; sleep 0.2` });
    }
    const [ra, rb] = [await relay(t), await relay(t)];
    const { proc: leader, url: leaderUrl } = await startReplicatedOrchestrator({
      sdd: sdd("L"),
      tokenFile,
      followers: { a: ra.url, b: rb.url },
      ackPolicy: "QUORUM",
      maxAgents: 2,
      ackTimeoutMs: 30000,
      cwd: dir,
      env,
      onSpawn: (p) => procs.push(p),
    });
    // Follower a refreshes its base snapshot every second: its promotion starts from a refreshed
    // snapshot (DR restore of it, then its own longer WAL), not from the bootstrap.
    const a = await startFollower({
      leader: leaderUrl,
      region: "a",
      sdd: sdd("A"),
      tokenFile,
      extra: ["--snapshot-interval", "1"],
      onSpawn: (p) => procs.push(p),
    });
    ra.to(portOf(a.url));
    const b = await startFollower({
      leader: leaderUrl,
      region: "b",
      sdd: sdd("B"),
      tokenFile,
      onSpawn: (p) => procs.push(p),
    });
    rb.to(portOf(b.url));

    // Let some tasks finish, then kill the leader mid-backlog.
    await eventually(
      "a few tasks done",
      async () => (await readFile(results, "utf8").catch(() => "")).split("\n").filter(Boolean).length >= 3,
    );
    const roleOfA = path.join(sdd("A"), "runtime", "replication", "role.json");
    await eventually("a refreshed base snapshot on follower a", async () => {
      const role = JSON.parse(await readFile(roleOfA, "utf8").catch(() => "{}")) as {
        base_snapshot?: { file: string } | null;
      };
      return Boolean(role.base_snapshot?.file);
    });
    // Following goes on beside the refreshes: a refresh never stalls the pull loop.
    const position = (
      (await getJson(`${leaderUrl}/status`, token)) as { wal: { position: { run_id: string; seq: number } } }
    ).wal.position;
    await eventually("follower a keeps following after a refresh", async () => {
      const v = await verifyWal(
        path.join(sdd("A"), "runtime", "wal", `${position.run_id}.wal.jsonl`),
        position.run_id,
      );
      return v.last_seq >= position.seq;
    });
    const st = await getJson(`${leaderUrl}/status`, token);
    assert.equal(st.policy, "QUORUM");
    leader.kill("SIGKILL");
    await leader.exited;

    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const pr = await runCli(
      ["--sdd", sdd("A"), "--json", "dr", "promote", "--token-file", tokenFile, "--peer", b.url],
      { env },
    );
    assert.equal(pr.code, 0, pr.stderr + pr.stdout);
    assert.equal(JSON.parse(pr.stdout).epoch, 2);
    assert.match(
      String(JSON.parse(pr.stdout).base_snapshot),
      /base-snapshot/,
      "promoted from the stored snapshot",
    );

    const aws = new Workspace(sdd("A"));
    const runs = await listRuns(aws);
    assert.ok(runs.length >= 1);
    for (const run of runs) {
      const v = await verifyWal(run.file, run.run_id);
      assert.equal(v.ok, true, JSON.stringify(v.errors));
      // Every entry the followers acknowledged to the leader is in the promoted WAL.
      const lv = await verifyWal(
        path.join(sdd("L"), "runtime", "wal", `${run.run_id}.wal.jsonl`),
        run.run_id,
      );
      assert.ok(lv.last_seq >= v.last_seq);
    }

    const doctor = await runCli(["--sdd", sdd("A"), "--json", "doctor"], { env, cwd: dir });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);

    // The old leader restarted on its stale workspace learns epoch 2 (from the fenced follower b)
    // and refuses to go on: no decision of it is acknowledged.
    const oldLeaderArgs = [
      "--sdd",
      sdd("L"),
      "start",
      "--poll",
      "50",
      "--replication-listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
      "--ack-policy",
      "QUORUM",
      "--follower",
      `a=${ra.url}`,
      "--follower",
      `b=${rb.url}`,
      "--ack-timeout",
      "30000",
      "--probe-interval",
      "200",
    ];
    const old = await runCli(oldLeaderArgs, { env, cwd: dir, timeoutMs: 60_000 });
    assert.equal(old.code, 8, old.stderr);
    assert.match(old.stderr, /superseded by epoch 2/);
    const again = await runCli(oldLeaderArgs, { env, cwd: dir, timeoutMs: 60_000 });
    assert.equal(again.code, 8, "a fenced leader refuses to start");
    assert.match(again.stderr, /superseded by epoch 2/);

    b.proc.kill("SIGTERM");
    await b.proc.exited;
    const fin = await runCli(
      ["--sdd", sdd("A"), "--json", "start", "--until-idle", "--poll", "50", "--max-agents", "2"],
      { env, cwd: dir },
    );
    assert.equal(fin.code, 0, fin.stderr);
    const doc = JSON.parse(fin.stdout) as { counts: { done: number } };
    assert.equal(doc.counts.done, ids.length);
    const ran = new Set((await readFile(results, "utf8")).split("\n").filter(Boolean));
    assert.deepEqual([...ran].sort(), ids);
  },
);

test(
  "a new follower bootstraps while start's first decision waits for it (ALL)",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-orch-boot-");
    const env = { XDG_STATE_HOME: path.join(dir, "state") };
    const { file: tokenFile } = await makeToken(dir);
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    const { workspace: lws } = await initWorkspace(sdd("L"));
    await addTask(lws, { id: "t1", title: "t1", command: "true" });
    // The follower is up first, asking for its base snapshot until the leader serves.
    const leaderAddress = await relay(t);
    const following = startFollower({
      leader: leaderAddress.url,
      region: "f1",
      sdd: sdd("F"),
      tokenFile,
      onSpawn: (p) => procs.push(p),
    });
    following.catch(() => {}); // awaited below
    const child = spawn(
      process.execPath,
      [
        ...CLI_ARGV,
        ...["--sdd", sdd("L"), "start", "--until-idle", "--poll", "50"],
        ...["--replication-listen", "127.0.0.1:0", "--token-file", tokenFile],
        // Longer than the default 5 s, so that a loaded machine's slow bootstrap is not taken
        // for the deadlock: before the fix the snapshot waited for the decision, which waited
        // for this follower's ack until the timeout halted the leader, whatever its length.
        ...["--ack-policy", "ALL", "--follower", "f1", "--ack-timeout", "30000"],
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: dir, env: cliEnv(env) },
    );
    const leader = new Proc(child, "leader");
    procs.push(leader);
    const [, url] = await leader.waitFor(
      "the leader endpoint",
      () => /replication: serving at (\S+) /.exec(leader.stderr) ?? undefined,
    );
    leaderAddress.to(portOf(url));
    // Its first decision waits for f1, which needs the snapshot first: the snapshot is served
    // while the decision waits, not after the ack timeout halted the leader.
    const { code } = await leader.exited;
    assert.equal(code, 0, leader.stderr);
    await following;
    const [run] = await listRuns(lws);
    await eventually("f1 holds the whole run", async () => {
      const mine = await verifyWal(run.file, run.run_id);
      const theirs = await verifyWal(
        path.join(sdd("F"), "runtime", "wal", `${run.run_id}.wal.jsonl`),
        run.run_id,
      );
      return theirs.ok && theirs.last_seq === mine.last_seq;
    });
  },
);
