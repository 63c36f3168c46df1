/**
 * One follower SIGSTOPped becomes LAGGING then UNREACHABLE; QUORUM still commits with
 * the other; ALL stops committing within --ack-timeout and says so (status, log line, metric);
 * SIGCONT: the follower catches up and turns HEALTHY (and ALL resumes).
 */
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { type TestContext, test } from "node:test";

import {
  eventually,
  getJson,
  makeToken,
  portOf,
  type Proc,
  relay,
  startDecider,
  startFollower,
  scratchWithProcs,
} from "./support/procs.js";

interface FollowerView {
  name: string;
  health: string;
  lag_entries: number;
}

async function cluster(
  t: TestContext,
  dir: string,
  policy: string,
  extra: { ackTimeout: number; maxLagEntries: number; maxRetries: number; onAckTimeout?: string },
  procs: Proc[],
) {
  const { file: tokenFile, token } = await makeToken(dir);
  const [ra, rb] = [await relay(t), await relay(t)];
  // Decisions start once both followers are HEALTHY: at 200 a second, a machine busy enough to
  // starve the decider makes it catch up in bursts that keep a follower over 10 entries behind.
  const gate = path.join(dir, "decide");
  const leader = await startDecider({
    startGate: gate,
    sdd: path.join(dir, "L", ".sdd"),
    tokenFile,
    policy,
    followers: [`a=${ra.url}`, `b=${rb.url}`],
    rate: 200,
    probeInterval: 150,
    runId: "run-health",
    ...extra,
  });
  procs.push(leader.proc); // killed by the test's after() even if the setup below fails
  const start = (region: string) =>
    startFollower({
      leader: leader.url,
      region,
      sdd: path.join(dir, region.toUpperCase(), ".sdd"),
      tokenFile,
      extra: ["--max-lag-entries", String(extra.maxLagEntries)],
      onSpawn: (p) => procs.push(p),
    });
  const a = await start("a");
  ra.to(portOf(a.url));
  const b = await start("b");
  rb.to(portOf(b.url));
  const status = () => getJson(`${leader.url}/status`, token);
  const followerB = async () => ((await status()).followers as FollowerView[]).find((f) => f.name === "b")!;
  await eventually("both followers HEALTHY", async () => {
    const fs = (await status()).followers as FollowerView[];
    if (fs.length === 2 && fs.every((f) => f.health === "HEALTHY")) return true;
    throw new Error(JSON.stringify(fs.map((f) => [f.name, f.health, f.lag_entries])));
  });
  await writeFile(gate, "");
  return { leader, a, b, token, status, followerB };
}

test(
  "QUORUM: a stopped follower turns LAGGING then UNREACHABLE, commits go on, SIGCONT catches up",
  { timeout: 90_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-health-");
    const c = await cluster(t, dir, "QUORUM", { ackTimeout: 5000, maxLagEntries: 10, maxRetries: 6 }, procs);

    c.b.proc.kill("SIGSTOP");
    const seen: string[] = [];
    await eventually("b UNREACHABLE", async () => {
      const h = (await c.followerB()).health;
      if (seen.at(-1) !== h) seen.push(h);
      return h === "UNREACHABLE";
    });
    assert.ok(seen.includes("LAGGING"), `b went ${seen.join(" → ")}`);
    assert.ok(seen.indexOf("LAGGING") < seen.indexOf("UNREACHABLE"), `b went ${seen.join(" → ")}`);

    // QUORUM still commits with the other follower.
    const before = c.leader.proc.acks().length;
    await c.leader.proc.waitFor(
      "more acknowledged decisions",
      () => c.leader.proc.acks().length >= before + 50,
    );
    assert.equal((await c.status()).policy_state, "OK");

    c.b.proc.kill("SIGCONT");
    const back = await eventually("b HEALTHY again", async () => {
      const f = await c.followerB();
      return f.health === "HEALTHY" ? f : undefined;
    });
    assert.ok(back.lag_entries <= 10);
  },
);

test(
  "ALL: a stopped follower halts decisions within the ack timeout and says so; SIGCONT resumes",
  { timeout: 90_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-all-");
    const c = await cluster(t, dir, "ALL", { ackTimeout: 1000, maxLagEntries: 10, maxRetries: 3 }, procs);
    await c.leader.proc.waitFor("some acknowledged decisions", () => c.leader.proc.acks().length >= 20);

    c.b.proc.kill("SIGSTOP");
    const halted = await eventually("the leader to halt", async () => {
      const s = await c.status();
      return s.policy_state === "HALTED" ? s : undefined;
    });
    assert.match(String(halted.policy_reason), /ALL not met within 1000 ms/);
    await c.leader.proc.waitFor("the HALTED log line", () =>
      /replication: HALTED: ALL not met within 1000 ms/.test(c.leader.proc.stderr),
    );
    const metrics = await (
      await fetch(`${c.leader.url}/metrics`, { headers: { authorization: `Bearer ${c.token}` } })
    ).text();
    assert.match(metrics, /^bernstein_replication_halted 1$/m);
    // Decisions that waited were refused, new ones are refused before reaching the WAL, none acknowledged.
    const acksAtHalt = c.leader.proc.acks().length;
    await c.leader.proc.waitFor(
      "refused decisions",
      () => c.leader.proc.events.filter((e) => e.refused !== undefined).length >= 3,
    );
    assert.ok(
      c.leader.proc.events.some(
        (e) => typeof e.error === "string" && /replication halted/.test(e.error as string),
      ),
    );
    assert.equal(
      c.leader.proc.acks().length,
      acksAtHalt,
      "a decision was acknowledged while ALL could not be met",
    );

    c.b.proc.kill("SIGCONT");
    await eventually("b HEALTHY and the policy met again", async () => {
      const s = await c.status();
      const b = (s.followers as FollowerView[]).find((f) => f.name === "b")!;
      return b.health === "HEALTHY" && s.policy_state === "OK";
    });
    await c.leader.proc.waitFor(
      "decisions acknowledged again",
      () => c.leader.proc.acks().length > acksAtHalt + 10,
    );
  },
);

test(
  "ALL with --on-ack-timeout degrade: continues as LEADER_ONLY and writes an audit event",
  { timeout: 90_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-degrade-");
    const c = await cluster(
      t,
      dir,
      "ALL",
      {
        ackTimeout: 500,
        maxLagEntries: 10,
        maxRetries: 3,
        onAckTimeout: "degrade",
      },
      procs,
    );
    c.b.proc.kill("SIGSTOP");
    const s = await eventually("DEGRADED", async () => {
      const x = await c.status();
      return x.policy_state === "DEGRADED" ? x : undefined;
    });
    assert.match(String(s.policy_reason), /ALL not met within 500 ms/);
    const before = c.leader.proc.acks().length;
    await c.leader.proc.waitFor(
      "decisions acknowledged while degraded",
      () => c.leader.proc.acks().length >= before + 30,
    );
    assert.equal(
      c.leader.proc.events.filter((e) => e.reject !== undefined || e.refused !== undefined).length,
      0,
    );
    const auditDir = path.join(dir, "L", ".sdd", "audit");
    const audit = await eventually("the audit event", async () => {
      const files = await readdir(auditDir);
      const text = (await Promise.all(files.map((f) => readFile(path.join(auditDir, f), "utf8")))).join("");
      return /"event_type": "replication_degraded"/.test(text) ? text : undefined;
    });
    assert.match(audit, /ALL not met within 500 ms/);
  },
);
