/** Acknowledgement policies, the quorum arithmetic behind the no-split-brain argument, health and failover. */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { test } from "node:test";
import {
  AckPolicy,
  type AckPolicyName,
  promotionQuorum,
  ReplicationError,
  requiredAcks,
} from "../../src/replication/ack-policy.js";
import { bearerMatches, loadTokenFile } from "../../src/replication/auth.js";
import { raiseEpoch, readEpoch, recordSuperseded } from "../../src/replication/epoch.js";
import { evaluateFailover, type NodeState, writeRunbook } from "../../src/replication/failover.js";
import { classify, DEFAULT_THRESHOLDS, newFollowerRecord } from "../../src/replication/health.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { writeRole } from "../../src/workspace/replication-role.js";
import { runCli, scratchDir } from "../helpers.js";
import { makeToken } from "./support/procs.js";

function policy(
  name: AckPolicyName,
  followers: string[],
  onTimeout: "stop" | "degrade" = "stop",
  timeoutMs = 60_000,
) {
  const acked = new Map<string, Map<string, number>>(followers.map((f) => [f, new Map()]));
  const tails = new Map<string, number>([["run", -1]]);
  const logs: string[] = [];
  const audits: Array<{ type: string; details: Record<string, unknown> }> = [];
  const p = new AckPolicy({
    policy: name,
    followers,
    timeoutMs,
    onTimeout,
    tails: () => tails,
    acked: (f) => acked.get(f),
    log: (l) => logs.push(l),
    audit: (type, details) => void audits.push({ type, details }),
  });
  const ack = (f: string, seq: number): void => {
    acked.get(f)!.set("run", seq);
    p.onAck();
  };
  return { p, ack, tails, logs, audits };
}

const settled = async (pr: Promise<unknown>): Promise<string> => {
  const marker = Symbol();
  const r = await Promise.race([
    pr.then(
      () => "resolved",
      (e: Error) => `rejected: ${e.message}`,
    ),
    new Promise((r) => setImmediate(() => r(marker))),
  ]);
  return r === marker ? "pending" : (r as string);
};

test("required acknowledgements and the promotion quorum always intersect", () => {
  assert.equal(requiredAcks("LEADER_ONLY", 2), 0);
  assert.equal(requiredAcks("QUORUM", 2), 1);
  assert.equal(requiredAcks("QUORUM", 3), 2);
  assert.equal(requiredAcks("QUORUM", 4), 2);
  assert.equal(requiredAcks("ALL", 3), 3);
  // The argument of docs/replication.md: any set of followers that acknowledged a decision and
  // any set a promotion reached share a follower, for every policy that waits for followers.
  for (const name of ["QUORUM", "ALL"] as const) {
    for (let n = 1; n <= 7; n++) {
      const r = requiredAcks(name, n);
      const q = promotionQuorum(name, n);
      assert.ok(r >= 1 && q >= 1 && q <= n, `${name} n=${n}`);
      for (let ackMask = 0; ackMask < 1 << n; ackMask++) {
        if (popcount(ackMask) < r) continue;
        for (let promoMask = 0; promoMask < 1 << n; promoMask++) {
          if (popcount(promoMask) < q) continue;
          assert.ok(
            (ackMask & promoMask) !== 0,
            `${name} n=${n}: acked ${ackMask.toString(2)} and promotion ${promoMask.toString(2)} are disjoint`,
          );
          // The followers left unfenced are too few for the old leader to get a decision acknowledged.
          assert.ok(n - popcount(promoMask) < r);
        }
      }
    }
  }
});

test("LEADER_ONLY: a promotion must reach every follower, never more than there are", () => {
  for (let n = 1; n <= 7; n++) assert.equal(promotionQuorum("LEADER_ONLY", n), n, `n=${n}`);
});

test("dr promote under LEADER_ONLY: one follower promotes alone, two need each other; the old leader's fencing is told", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-promote-lo-");
  t.after(cleanup);
  const env = { BERNSTEIN_AUDIT_KEY_PATH: `${dir}/key/audit.key` };
  const { file: tokenFile } = await makeToken(dir);
  // A port nobody listens on: the old leader is gone, a peer is down.
  const gone = await new Promise<string>((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(`http://127.0.0.1:${port}`));
    });
  });
  const follower = async (name: string, followers: Array<{ name: string; url: string | null }>) => {
    const sdd = `${dir}/${name}/.sdd`;
    const { workspace } = await initWorkspace(sdd);
    await writeRole(workspace, {
      role: "follower",
      region: name,
      leader_url: gone,
      cluster: { policy: "LEADER_ONLY", followers },
    });
    return sdd;
  };

  const two = await follower("b", [
    { name: "b", url: null },
    { name: "c", url: gone },
  ]);
  const refused = await runCli(["--sdd", two, "dr", "promote", "--token-file", tokenFile], { env });
  assert.equal(refused.code, 8, refused.stderr);
  assert.match(
    refused.stderr,
    /^bernstein: [^\n]*promotion reached 1 of 2 followers \(this one included\); a promotion under LEADER_ONLY must reach 2: [^\n]*--force\n$/,
  );

  const one = await follower("a", [{ name: "a", url: null }]);
  const r = await runCli(["--sdd", one, "dr", "promote", "--token-file", tokenFile], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^Reached 1 follower \(this one included\); a promotion under LEADER_ONLY needs 1\.$/m,
  );
  assert.match(
    r.stdout,
    new RegExp(
      `^Old leader ${gone}: NOT fenced \\(POST /fence: [^\\n]*ECONNREFUSED[^\\n]*\\); if it still runs, stop it by hand\\.$`,
      "m",
    ),
  );
});

function popcount(x: number): number {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
}

test("QUORUM resolves with a majority of the replica set, ALL waits for everyone", async () => {
  const q = policy("QUORUM", ["a", "b"]);
  const g = q.p.gate({ runId: "run", seq: 3 });
  assert.equal(await settled(g), "pending");
  q.ack("a", 2);
  assert.equal(await settled(g), "pending");
  q.ack("b", 3);
  assert.equal(await settled(g), "resolved");

  const all = policy("ALL", ["a", "b"]);
  const g2 = all.p.gate({ runId: "run", seq: 0 });
  all.ack("a", 0);
  assert.equal(await settled(g2), "pending");
  all.ack("b", 5);
  assert.equal(await settled(g2), "resolved");

  const lo = policy("LEADER_ONLY", []);
  assert.equal(await settled(lo.p.gate({ runId: "run", seq: 0 })), "resolved");
});

test("ack timeout: stop halts (rejects, logs) until the followers hold the tail; degrade continues with an audit event", async () => {
  const s = policy("ALL", ["a", "b"], "stop", 20);
  s.tails.set("run", 0);
  const g = s.p.gate({ runId: "run", seq: 0 });
  s.ack("a", 0);
  await assert.rejects(
    g,
    (e: Error) =>
      e instanceof ReplicationError && /ALL not met within 20 ms for run#0 \(1\/2/.test(e.message),
  );
  assert.equal(s.p.state, "HALTED");
  assert.match(s.logs.join("\n"), /HALTED/);
  await assert.rejects(s.p.gate({ runId: "run", seq: 1 }), /replication halted/);
  s.ack("b", 0);
  assert.equal(s.p.state, "OK");
  assert.match(s.logs.at(-1)!, /resuming decisions/);

  const d = policy("QUORUM", ["a", "b"], "degrade", 20);
  d.tails.set("run", 0);
  await d.p.gate({ runId: "run", seq: 0 });
  assert.equal(d.p.state, "DEGRADED");
  assert.equal(d.audits[0].type, "replication_degraded");
  assert.equal(await settled(d.p.gate({ runId: "run", seq: 1 })), "resolved");
  d.tails.set("run", 1);
  d.ack("a", 1);
  assert.equal(d.p.state, "OK");
  assert.equal(d.audits[1].type, "replication_restored");

  const f = policy("QUORUM", ["a"]);
  const pending = f.p.gate({ runId: "run", seq: 0 });
  f.p.fence("fenced: superseded by epoch 2");
  await assert.rejects(pending, /superseded by epoch 2/);
  f.ack("a", 0);
  await assert.rejects(f.p.gate({ runId: "run", seq: 1 }), /superseded by epoch 2/);
});

test("health: UNKNOWN, HEALTHY, LAGGING above max_lag_entries, UNREACHABLE after max_retries", () => {
  const r = newFollowerRecord("a");
  assert.equal(classify(r, 0, DEFAULT_THRESHOLDS), "UNKNOWN");
  r.lastAckAt = Date.now();
  assert.equal(classify(r, 100, DEFAULT_THRESHOLDS), "HEALTHY");
  assert.equal(classify(r, 101, DEFAULT_THRESHOLDS), "LAGGING");
  r.consecutiveFailures = 2;
  assert.equal(classify(r, 0, DEFAULT_THRESHOLDS), "HEALTHY");
  r.consecutiveFailures = 3;
  assert.equal(classify(r, 0, DEFAULT_THRESHOLDS), "UNREACHABLE");
});

test("failover evaluation and the runbook", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-runbook-");
  t.after(cleanup);
  const node = (
    name: string,
    role: "leader" | "follower",
    health: string,
    lag: number | null,
  ): NodeState => ({
    name,
    role,
    url: `http://${name}:1`,
    epoch: 1,
    wal_position: { run_id: "run-x", seq: 40 },
    health,
    lag_entries: lag,
    lag_seconds: lag === null ? null : lag / 10,
  });
  const th = DEFAULT_THRESHOLDS;
  assert.equal(
    evaluateFailover({
      perspective: "leader",
      policy: "QUORUM",
      thresholds: th,
      nodes: [node("l", "leader", "OK", 0), node("a", "follower", "HEALTHY", 0)],
    }).decision,
    "NO_ACTION",
  );
  assert.equal(
    evaluateFailover({
      perspective: "leader",
      policy: "QUORUM",
      thresholds: th,
      nodes: [node("a", "follower", "LAGGING", 150), node("b", "follower", "HEALTHY", 0)],
    }).decision,
    "ALERT_ONLY",
  );
  assert.equal(
    evaluateFailover({
      perspective: "leader",
      policy: "QUORUM",
      thresholds: th,
      nodes: [node("a", "follower", "LAGGING", 1001)],
    }).decision,
    "FAILOVER_RECOMMENDED",
  );
  assert.equal(
    evaluateFailover({
      perspective: "leader",
      policy: "QUORUM",
      thresholds: th,
      nodes: [
        node("a", "follower", "UNREACHABLE", 5),
        node("b", "follower", "UNREACHABLE", 5),
        node("c", "follower", "HEALTHY", 0),
      ],
    }).decision,
    "FAILOVER_RECOMMENDED",
  );
  assert.equal(
    evaluateFailover({ perspective: "follower", policy: null, thresholds: th, leaderFailures: 3, nodes: [] })
      .decision,
    "FAILOVER_RECOMMENDED",
  );
  assert.equal(
    evaluateFailover({ perspective: "follower", policy: null, thresholds: th, leaderFailures: 1, nodes: [] })
      .decision,
    "ALERT_ONLY",
  );
  // A leader out of reach after its clean stop: an alert, never a failover.
  const stopped = { run_id: "run-x", seq: 41, at: "2030-01-02T03:04:05.000Z", reason: "stopped" };
  const afterStop = evaluateFailover({
    perspective: "follower",
    policy: null,
    thresholds: th,
    leaderFailures: 9,
    leaderStopped: stopped,
    nodes: [],
  });
  assert.equal(afterStop.decision, "ALERT_ONLY");
  assert.deepEqual(afterStop.reasons, [
    "leader stopped cleanly at 2030-01-02T03:04:05.000Z, seq 41 of run run-x (stopped), unreachable since (9 failed contacts); promote only if it will not come back",
  ]);
  // Not reached since it started, and no stop in its WAL: it says it cannot tell (and still recommends).
  const unknown = evaluateFailover({
    perspective: "follower",
    policy: null,
    thresholds: th,
    leaderFailures: 3,
    leaderNeverReached: true,
    nodes: [],
  });
  assert.equal(unknown.decision, "FAILOVER_RECOMMENDED");
  assert.match(unknown.reasons[0], /cannot tell whether the leader stopped or was lost/);

  const { workspace } = await initWorkspace(`${dir}/.sdd`);
  const nodes = [
    node("old", "leader", "UNREACHABLE", null),
    node("east", "follower", "HEALTHY", 3),
    node("west", "follower", "HEALTHY", 9),
  ];
  const input = {
    perspective: "follower" as const,
    policy: "QUORUM" as const,
    thresholds: th,
    leaderFailures: 3,
    nodes,
  };
  const file = await writeRunbook(workspace, {
    ...input,
    evaluation: evaluateFailover(input),
    writtenBy: "test",
    tokenFile: "/etc/bernstein/token",
    lastBackup: { location: "/backups/b1.tar.gz", created_at: "2026-01-01T00:00:00.000Z", age_seconds: 3600 },
  });
  assert.match(file, /docs\/runbooks\/DR-RUNBOOK-\d{8}T\d{6}Z\.md$/);
  assert.deepEqual(await readdir(`${dir}/.sdd/docs/runbooks`), [file.split("/").at(-1)]);
  const text = await readFile(file, "utf8");
  for (const section of [
    "## Situation",
    "## Nodes",
    "## Recommended action",
    "## Commands",
    "## Estimated data loss",
    "## Post-recovery checklist",
  ]) {
    assert.ok(text.includes(section), section);
  }
  assert.match(text, /FAILOVER_RECOMMENDED/);
  assert.match(text, /Promote follower \*\*east\*\*/);
  assert.match(
    text,
    /bernstein dr promote --sdd <east \.sdd folder> --token-file \/etc\/bernstein\/token --peer http:\/\/west:1/,
  );
  assert.match(text, /bernstein dr restore --from \/backups\/b1\.tar\.gz/);
  assert.match(text, /Promoting east: 3 entries, 0\.3 s/);
});

test("dr runbook on a fenced old leader: re-join with replicate follow --rebootstrap; the token file absolute, as --sdd is", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-runbook-fenced-");
  t.after(cleanup);
  const sdd = `${dir}/L/.sdd`;
  const { workspace } = await initWorkspace(sdd);
  await recordSuperseded(workspace, 2, "test");
  await makeToken(dir, "tok");
  const r = await runCli(["--sdd", sdd, "--json", "dr", "runbook", "--token-file", "../tok"], {
    cwd: `${dir}/L`,
  });
  assert.equal(r.code, 0, r.stderr);
  const text = await readFile((JSON.parse(r.stdout) as { runbook: string }).runbook, "utf8");
  assert.doesNotMatch(text, /recover the leader's disk|dr promote/);
  assert.match(text, /superseded by a newer epoch/);
  assert.match(
    text,
    new RegExp(
      `^bernstein replicate follow --rebootstrap --leader <NEW_LEADER_URL> --follower-name <NAME> --sdd \\S+ --token-file ${dir}/tok$`,
      "m",
    ),
  );
  assert.doesNotMatch(text, /\.\.\/tok/);
});

test("epoch: raised durably, fencing recorded, token checks", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-epoch-unit-");
  t.after(cleanup);
  const { workspace } = await initWorkspace(`${dir}/.sdd`);
  assert.equal((await readEpoch(workspace)).epoch, 1);
  assert.equal((await raiseEpoch(workspace)).epoch, 2);
  assert.equal((await readEpoch(workspace)).epoch, 2);
  await recordSuperseded(workspace, 5, "test");
  const s = await readEpoch(workspace);
  assert.equal(s.superseded_by, 5);
  assert.equal((await raiseEpoch(workspace)).epoch, 6, "a promotion goes past every epoch it has seen");

  const { file, token } = await makeToken(dir);
  assert.equal(await loadTokenFile(file), token);
  assert.equal(bearerMatches(`Bearer ${token}`, token), true);
  assert.equal(bearerMatches(`Bearer ${token.slice(1)}`, token), false);
  assert.equal(bearerMatches(undefined, token), false);
  assert.equal(bearerMatches("Bearer ", token), false);
  assert.equal(bearerMatches(token, token), false);
});

test("dr status on a stopped follower with an integrity error: the error is the alert, no 'null entries'", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-status-integrity-");
  t.after(cleanup);
  const sdd = `${dir}/.sdd`;
  const { workspace } = await initWorkspace(sdd);
  await writeRole(workspace, {
    role: "follower",
    region: "east",
    leader_url: "http://127.0.0.1:1",
    integrity_error: "run#15: prev_hash does not continue the chain",
  });
  const h = await runCli(["--sdd", sdd, "dr", "status"]);
  assert.equal(h.code, 0, h.stderr);
  assert.doesNotMatch(h.stdout, /null/);
  assert.match(h.stdout, /integrity error: run#15: prev_hash does not continue the chain/);
  const lagging = (name: string, lag: number | null): NodeState => ({
    name,
    role: "follower",
    url: null,
    epoch: 1,
    wal_position: null,
    health: "LAGGING",
    lag_entries: lag,
    lag_seconds: null,
  });
  const ev = evaluateFailover({
    perspective: "leader",
    policy: "QUORUM",
    thresholds: DEFAULT_THRESHOLDS,
    nodes: [lagging("east", 120), lagging("west", null)],
  });
  assert.deepEqual(ev.reasons, [
    "follower east is LAGGING (120 entries)",
    "follower west is LAGGING (lag unknown)",
  ]);
});

test("dr status on a plain workspace: a stand-alone leader at epoch 1, no followers, RPO from the backup", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-status-");
  t.after(cleanup);
  const sdd = `${dir}/.sdd`;
  await initWorkspace(sdd);
  const j = await runCli(["--sdd", sdd, "--json", "dr", "status"]);
  assert.equal(j.code, 0, j.stderr);
  const doc = JSON.parse(j.stdout) as Record<string, unknown>;
  assert.equal(doc.role, "leader");
  assert.equal(doc.epoch, 1);
  assert.equal(doc.fenced, false);
  assert.equal(doc.live, null);
  assert.deepEqual(doc.followers, []);
  assert.equal((doc.failover as { decision: string }).decision, "NO_ACTION");
  const h = await runCli(["--sdd", sdd, "dr", "status"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /^Node: +leader, epoch 1$/m);
  assert.match(h.stdout, /^RPO: +unknown entries/m);
  const none = await runCli(["--sdd", `${dir}/nope`, "dr", "status"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no workspace/);
});

test("dr runbook with NO_ACTION says there is nothing to do now; the restore is the plan only if the leader is lost", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-runbook-");
  t.after(cleanup);
  const env = { BERNSTEIN_AUDIT_KEY_PATH: `${dir}/key/audit.key`, BERNSTEIN_DR_PASSWORD: undefined };
  const sdd = `${dir}/.sdd`;
  await initWorkspace(sdd);
  assert.equal((await runCli(["--sdd", sdd, "dr", "backup", "--to", `${dir}/b.tar.gz`], { env })).code, 0);
  const r = await runCli(["--sdd", sdd, "dr", "runbook"], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^Evaluation: NO_ACTION\nNothing to do now; the runbook holds the plan should the leader be lost\.$/m,
  );
  const file = /^Runbook written: (.+)$/m.exec(r.stdout)![1]!;
  const text = await readFile(file, "utf8");
  const recommended = text.slice(text.indexOf("## Recommended action"), text.indexOf("## Commands"));
  assert.match(
    recommended,
    /^\*\*Nothing to do now\*\*: no failover, no restore\. Should the leader be lost, this is the plan:$/m,
  );
  assert.match(text, /^## Commands \(only if the leader is lost\)\n/m);
  // The restore is still spelled out, under that heading.
  const commands = text.slice(text.indexOf("## Commands"));
  assert.match(commands, /bernstein dr restore --from \S+b\.tar\.gz/);
});

test("dr runbook with a WAL archive: restoring its newest point is the plan, with what it would lose now", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repl-runbook-archive-");
  t.after(cleanup);
  const env = { BERNSTEIN_AUDIT_KEY_PATH: `${dir}/key/audit.key`, BERNSTEIN_DR_PASSWORD: undefined };
  const sdd = `${dir}/.sdd`;
  const store = `${dir}/archive`;
  await initWorkspace(sdd);
  assert.equal((await runCli(["--sdd", sdd, "dr", "backup", "--to", `${dir}/b.tar.gz`], { env })).code, 0);
  assert.equal((await runCli(["--sdd", sdd, "dr", "archive", "--to", store, "--once"], { env })).code, 0);
  const runbook = async () => {
    const r = await runCli(["--sdd", sdd, "dr", "runbook"], { env });
    assert.equal(r.code, 0, r.stderr);
    return readFile(/^Runbook written: (.+)$/m.exec(r.stdout)![1]!, "utf8");
  };
  const text = await runbook();
  assert.match(
    text,
    new RegExp(`^- WAL archive: ${store} \\(archiver not running since \\S+; lag 0 entries, 0 s\\)\\.$`, "m"),
  );
  assert.match(
    text,
    /^No follower can be promoted: \*\*restore the WAL archive's newest point\*\* on a new host \(the last good backup is the fallback\)\.$/m,
  );
  const commands = text.slice(text.indexOf("## Commands"), text.indexOf("## Estimated data loss"));
  const archiveRestore = commands.indexOf(
    `bernstein dr restore --from ${store} --latest --sdd <NEW_HOST_SDD>`,
  );
  const backupRestore = commands.search(/bernstein dr restore --from \S+b\.tar\.gz/);
  assert.ok(archiveRestore >= 0 && backupRestore > archiveRestore, commands);
  assert.match(text, /^- Restoring the WAL archive's newest point: 0 entries, 0 s \(its lag now\)\.$/m);

  // Decisions made without the archiver: what restoring the archive would lose now.
  assert.equal((await runCli(["--sdd", sdd, "task", "add", "one", "--command", "true"], { env })).code, 0);
  assert.equal((await runCli(["--sdd", sdd, "start", "--until-idle"], { env })).code, 0);
  const later = await runbook();
  const lost = /^- Restoring the WAL archive's newest point: (\d+) entries, /m.exec(later);
  assert.ok(lost && Number(lost[1]) > 0, later);
});

test("a signal while a decision waits: acknowledged within the grace it passes, else it is refused as interrupted", async () => {
  const healthy = policy("QUORUM", ["a"]);
  const g = healthy.p.gate({ runId: "run", seq: 0 });
  assert.equal(healthy.p.interrupt("SIGINT", 60_000), true);
  healthy.ack("a", 0);
  assert.equal(await settled(g), "resolved");

  const away = policy("QUORUM", ["a"]);
  const g2 = away.p.gate({ runId: "run", seq: 0 });
  away.p.interrupt("SIGTERM", 0);
  await assert.rejects(g2, {
    message: /^interrupted by SIGTERM while decision run#0 waited for QUORUM acknowledgements \(0\/1\)/,
    exitCode: 143,
  });
  // Nothing waits: the caller drains as usual.
  assert.equal(policy("QUORUM", ["a"]).p.interrupt("SIGINT"), false);
});
