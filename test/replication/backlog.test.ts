/**
 * Tasks added after the followers bootstrapped reach them only as WAL entries (their files and
 * ledger rows come with base snapshots, here never refreshed). After a failover the promoted
 * follower must still show what the old leader reported: `dr promote` writes the task files, their
 * folders and the ledger rows from the WAL; `doctor` passes; `start` goes on without re-running.
 */
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readTaskFile } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, runMain } from "../helpers.js";
import { taskCounts } from "../orchestrator/support/task-counts.js";
import {
  eventually,
  getJson,
  makeToken,
  portOf,
  relay,
  startFollower,
  startReplicatedOrchestrator,
  scratchWithProcs,
} from "./support/procs.js";

interface FollowerView {
  name: string;
  health: string;
  lag_entries: number;
}

interface Status {
  tasks: Record<string, number>;
  cost_usd: number;
}

interface Check {
  name: string;
  verdict: string;
  detail: string;
}

test(
  "a promoted follower shows the tasks added after its base snapshot: status, doctor and start agree with the old leader",
  { timeout: 180_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-backlog-");
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    Object.assign(process.env, env); // the followers (children of this process) too
    const { file: tokenFile, token } = await makeToken(dir);
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    const { workspace: leaderWs } = await initWorkspace(sdd("L"));
    const results = path.join(dir, "results.txt");
    // Each task reports a cost, so every completion also writes a ledger row.
    const command = (id: string): string =>
      `echo ${id} >> ${results}; echo '{"cost_usd": 0.25, "input_tokens": 10, "output_tokens": 5, "model": "m1"}'`;
    // `task add` in this process: a real `bernstein task add` is tested in test/orchestrator/tasks;
    // here it only writes the task file (the same parser and code), a process would add a start-up.
    const add = async (ws: string, id: string, extra: string[] = []): Promise<void> => {
      const r = await runMain(
        ["--sdd", ws, "task", "add", id, "--id", id, "--command", command(id), ...extra],
        {
          env,
        },
      );
      assert.equal(r.code, 0, r.stderr);
    };
    await add(sdd("L"), "b-00");

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
    // Default --snapshot-interval (600 s): the followers hold their bootstrap snapshot only.
    const a = await startFollower({
      leader: leaderUrl,
      region: "a",
      sdd: sdd("A"),
      tokenFile,
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
    const followers = async (): Promise<FollowerView[]> =>
      (await getJson(`${leaderUrl}/status`, token)).followers as FollowerView[];
    await eventually("both followers HEALTHY", async () =>
      (await followers()).every((f) => f.health === "HEALTHY"),
    );

    // Tasks added after the bootstrap: their files never reach the followers.
    const later = ["b-01", "b-02", "b-03", "b-04"];
    await add(sdd("L"), "b-01");
    await add(sdd("L"), "b-02", ["--depends-on", "b-01", "--priority", "1", "--max-retries", "2"]);
    await add(sdd("L"), "b-03", ["--timeout", "90"]);
    await add(sdd("L"), "b-04");
    const ids = ["b-00", ...later];
    await eventually(
      "every task done on the leader",
      async () => {
        // Read from the leader's folders (what `status` counts), not a `status` process per poll.
        return (await taskCounts(leaderWs)).done === ids.length;
      },
      60_000,
    );
    // Both followers acknowledged everything: whatever the old leader reports is acknowledged.
    await eventually("both followers caught up", async () =>
      (await followers()).every((f) => f.lag_entries === 0),
    );
    const reported = JSON.parse(
      (await runCli(["--sdd", sdd("L"), "--json", "status"], { env })).stdout,
    ) as Status;
    assert.equal(reported.tasks.done, 5);
    assert.equal(reported.cost_usd, 1.25);

    // On a follower the missing files are expected: doctor says promotion writes them.
    const onFollower = await runCli(["--sdd", sdd("B"), "--json", "doctor"], { env, cwd: dir });
    const fchecks = JSON.parse(onFollower.stdout).checks as Check[];
    const fromWalOnB = fchecks.find((c) => c.name === "tasks_from_wal")!;
    assert.equal(fromWalOnB.verdict, "pass");
    assert.match(fromWalOnB.detail, /^follower: 4 task\(s\) of the WAL have no file yet/);
    // Its follow process holds the lock: `start` refuses the follower, `stop` names the process.
    const startOnB = await runCli(["--sdd", sdd("B"), "start", "--until-idle"], { env, cwd: dir });
    assert.equal(startOnB.code, 8, startOnB.stderr);
    assert.equal(
      startOnB.stderr,
      `bernstein: this node follows ${leaderUrl}; run \`bernstein dr promote\` before leading\n`,
    );
    const stopOnB = await runCli(["--sdd", sdd("B"), "stop", "--timeout", "0"], { env, cwd: dir });
    assert.equal(stopOnB.code, 3, stopOnB.stderr);
    assert.match(
      stopOnB.stderr,
      /^bernstein: stop: no orchestrator runs in .*: it is held by a follower process \(replicate follow, pid \d+ on [^)]+\); [^\n]*\n$/,
    );
    assert.equal(await stat(path.join(sdd("B"), "runtime", "signals", "stop.json")).catch(() => null), null);

    leader.kill("SIGKILL");
    await leader.exited;
    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const pr = await runCli(
      ["--sdd", sdd("A"), "--json", "dr", "promote", "--token-file", tokenFile, "--peer", b.url],
      { env },
    );
    assert.equal(pr.code, 0, pr.stderr + pr.stdout);
    const promoted = JSON.parse(pr.stdout) as {
      base_snapshot: string | null;
      from_wal: Record<string, number>;
    };
    assert.equal(promoted.base_snapshot, null, "no refreshed snapshot: the bootstrap's backlog only");
    assert.equal(promoted.from_wal.task_files_written, 4);
    // b-00 may have finished before or after follower a's bootstrap snapshot was taken.
    assert.ok(promoted.from_wal.ledger_rows_written >= 4, JSON.stringify(promoted.from_wal));

    // status on the promoted follower reports what the old leader reported.
    const st = JSON.parse((await runCli(["--sdd", sdd("A"), "--json", "status"], { env })).stdout) as Status;
    assert.deepEqual(st.tasks, reported.tasks);
    assert.equal(st.cost_usd, reported.cost_usd);
    // The task files hold the same tasks as the leader's.
    for (const id of ids) {
      assert.deepEqual(
        await readTaskFile(path.join(sdd("A"), "backlog", "done", `${id}.md`), "done"),
        await readTaskFile(path.join(sdd("L"), "backlog", "done", `${id}.md`), "done"),
        id,
      );
    }

    const doctor = await runCli(["--sdd", sdd("A"), "--json", "doctor"], { env, cwd: dir });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    const checks = JSON.parse(doctor.stdout).checks as Check[];
    for (const name of ["tasks_from_wal", "folders", "ledger"])
      assert.equal(checks.find((c) => c.name === name)?.verdict, "pass", `${name}: ${doctor.stdout}`);

    // start on it goes on: a new task runs, nothing that ran runs again.
    b.proc.kill("SIGTERM");
    await b.proc.exited;
    await add(sdd("A"), "b-05");
    const fin = await runCli(
      ["--sdd", sdd("A"), "--json", "start", "--until-idle", "--poll", "50", "--max-agents", "2"],
      { env, cwd: dir },
    );
    assert.equal(fin.code, 0, fin.stderr);
    assert.equal((JSON.parse(fin.stdout) as { counts: { done: number } }).counts.done, 6);
    const ran = (await readFile(results, "utf8")).split("\n").filter(Boolean).sort();
    assert.deepEqual(ran, [...ids, "b-05"], "every task ran exactly once");
    const after = await runCli(["--sdd", sdd("A"), "--json", "doctor"], { env, cwd: dir });
    assert.equal(after.code, 0, after.stdout);
  },
);
