/**
 * One leader and two followers under QUORUM; the leader is SIGKILLed after a random
 * number of acknowledged decisions; `dr promote` of either follower holds every acknowledged
 * decision and every chain verifies; the old leader restarted with its stale workspace cannot get
 * any decision acknowledged and reports the newer epoch. The kill point and the follower promoted
 * come from a seeded PRNG: a failure names its seed, BERNSTEIN_FAILOVER_SEED=<seed> replays them.
 */
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { verifyWal } from "../../src/wal/reader.js";
import { runCli, withSeed } from "../helpers.js";
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

const RUN = "run-failover";

test(
  "QUORUM: SIGKILL the leader, promote a follower: every acknowledged decision is there; the old leader is fenced",
  { timeout: 90_000 },
  (t) =>
    withSeed("BERNSTEIN_FAILOVER_SEED", async (rand) => {
      const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-failover-");
      const { file: tokenFile, token } = await makeToken(dir);
      // The leader names its followers, and the promotion the new leader, before they serve.
      const [relayA, relayB, relayNew] = [await relay(t), await relay(t), await relay(t)];
      const sdd = (n: string): string => path.join(dir, n, ".sdd");
      const leaderArgs = {
        sdd: sdd("L"),
        tokenFile,
        policy: "QUORUM",
        followers: [`a=${relayA.url}`, `b=${relayB.url}`],
        ackTimeout: 10_000,
        rate: 300,
        runId: RUN,
      };
      const leader = await startDecider(leaderArgs);
      procs.push(leader.proc);
      const followerArgs = (region: string) => ({
        leader: leader.url,
        region,
        sdd: sdd(region.toUpperCase()),
        tokenFile,
        // Only the leader's disappearance may recommend a failover here: a follower slowed down by
        // a busy machine must not recommend one (and write its runbook) for its lag first.
        extra: ["--max-lag-entries", "1000000"],
        onSpawn: (p: Proc) => procs.push(p),
      });
      const a = await startFollower(followerArgs("a"));
      relayA.to(portOf(a.url));
      const b = await startFollower(followerArgs("b"));
      relayB.to(portOf(b.url));

      const target = 20 + Math.floor(rand() * 150);
      t.diagnostic(`killing the leader after ${target} acknowledged decisions`);
      await leader.proc.waitFor(`${target} acks`, () => leader.proc.acks().length >= target, 30_000);
      leader.proc.kill("SIGKILL");
      await leader.proc.exited;
      const acked = leader.proc.acks();
      const maxAcked = Math.max(...acked);
      assert.ok(acked.length >= target);

      // Promote either follower; the other stays up as the peer the promotion must reach.
      const promoteA = rand() < 0.5;
      const [chosen, peer] = promoteA ? [a, b] : [b, a];
      const chosenSdd = promoteA ? sdd("A") : sdd("B");
      const peerSdd = promoteA ? sdd("B") : sdd("A");
      t.diagnostic(`promoting ${promoteA ? "a" : "b"}`);
      chosen.proc.kill("SIGKILL");
      await chosen.proc.exited;

      const pr = await runCli([
        "--sdd",
        chosenSdd,
        "--json",
        "dr",
        "promote",
        "--token-file",
        tokenFile,
        "--peer",
        peer.url,
        // Where the promoted node will lead: the fenced peer re-points to it by itself.
        "--new-leader-url",
        relayNew.url,
      ]);
      assert.equal(pr.code, 0, pr.stderr + pr.stdout);
      const promoted = JSON.parse(pr.stdout) as { epoch: number; reached: number; promotion_quorum: number };
      assert.equal(promoted.epoch, 2);
      assert.equal(promoted.reached, 2);
      assert.equal(promoted.promotion_quorum, 2);

      // Every acknowledged decision is in the promoted WAL, byte-identical to the leader's lines.
      const v = await verifyWal(path.join(chosenSdd, "runtime", "wal", `${RUN}.wal.jsonl`), RUN);
      assert.equal(v.ok, true, JSON.stringify(v.errors));
      assert.ok(
        v.last_seq >= maxAcked,
        `promoted WAL ends at ${v.last_seq}, an acknowledged decision has seq ${maxAcked}`,
      );
      const leaderBytes = await readFile(path.join(sdd("L"), "runtime", "wal", `${RUN}.wal.jsonl`), "utf8");
      const promotedBytes = await readFile(
        path.join(chosenSdd, "runtime", "wal", `${RUN}.wal.jsonl`),
        "utf8",
      );
      assert.ok(
        leaderBytes.startsWith(promotedBytes),
        "the promoted WAL is a byte-identical prefix of the leader's",
      );
      const lv = await verifyWal(path.join(sdd("L"), "runtime", "wal", `${RUN}.wal.jsonl`), RUN);
      assert.equal(lv.ok, true, JSON.stringify(lv.errors));
      const peerWal = path.join(peerSdd, "runtime", "wal", `${RUN}.wal.jsonl`);
      if (await stat(peerWal).catch(() => undefined)) {
        // (Under QUORUM the peer may not have received anything yet: one follower suffices.)
        const pv = await verifyWal(peerWal, RUN);
        assert.equal(pv.ok, true, JSON.stringify(pv.errors));
      }

      // The peer saw the leader go away: FAILOVER_RECOMMENDED, with a runbook in its workspace.
      const runbook = await eventually("the peer's runbook", async () => {
        const files = await readdir(path.join(peerSdd, "docs", "runbooks")).catch(() => [] as string[]);
        return files.find((f) => /^DR-RUNBOOK-\d{8}T\d{6}Z\.md$/.test(f));
      });
      const text = await readFile(path.join(peerSdd, "docs", "runbooks", runbook), "utf8");
      assert.match(text, /FAILOVER_RECOMMENDED/);
      assert.match(text, /leader unreachable from this follower/);
      assert.match(text, /^- Acknowledgement policy: QUORUM;/m, "the follower knows its leader's policy");
      assert.match(text, /--replication-listen HOST:PORT --ack-policy QUORUM /);
      assert.match(text, /bernstein dr promote --sdd /);

      // The peer was fenced at the new epoch, and follows the URL the promotion gave.
      const peerStatus = await getJson(`${peer.url}/status`, token);
      assert.equal(peerStatus.epoch, 2);
      await peer.proc.waitFor("the peer to re-point", () =>
        peer.proc.stderr.includes(`now following ${relayNew.url}`),
      );
      const peerRole = JSON.parse(
        await readFile(path.join(peerSdd, "runtime", "replication", "role.json"), "utf8"),
      ) as { leader_url: string };
      assert.equal(peerRole.leader_url, relayNew.url);

      const st = await runCli(["--sdd", chosenSdd, "--json", "dr", "status"]);
      assert.equal(st.code, 0, st.stderr);
      const sj = JSON.parse(st.stdout) as { role: string; epoch: number };
      assert.equal(sj.role, "leader");
      assert.equal(sj.epoch, 2);

      const rb = await runCli(["--sdd", chosenSdd, "--json", "dr", "runbook"]);
      assert.equal(rb.code, 0, rb.stderr);
      assert.match((JSON.parse(rb.stdout) as { runbook: string }).runbook, /docs\/runbooks\/DR-RUNBOOK-/);

      // The old leader restarted on its stale workspace: no decision is acknowledged, it reports epoch 2.
      const old = await startDecider(leaderArgs, "old leader");
      procs.push(old.proc);
      const oldStatus = await eventually("the old leader to learn the newer epoch", async () => {
        const s = await getJson(`${old.url}/status`, token);
        return s.fenced === true ? s : undefined;
      });
      assert.match(String(oldStatus.fenced_reason), /superseded by epoch 2/);
      await old.proc.waitFor(
        "refused decisions",
        () => old.proc.events.filter((e) => e.refused !== undefined || e.reject !== undefined).length >= 3,
      );
      assert.deepEqual(old.proc.acks(), [], "a fenced leader got a decision acknowledged");
      old.proc.kill("SIGKILL");
      await old.proc.exited;
      const ds = await runCli(["--sdd", sdd("L"), "--json", "dr", "status"]);
      assert.equal(ds.code, 8, ds.stderr);
      const dj = JSON.parse(ds.stdout) as { fenced: boolean; fenced_reason: string };
      assert.equal(dj.fenced, true);
      assert.match(dj.fenced_reason, /epoch 2/);
      const quiet = await runCli(["--sdd", sdd("L"), "--quiet", "dr", "status"]);
      assert.equal(quiet.code, 8);
      assert.match(quiet.stderr, /^bernstein: dr status: fenced: [^\n]*epoch 2[^\n]*\n$/);

      // The promoted node leads epoch 2 where the promotion said; the other follower, still the
      // same process, continues the same chain from it.
      const peerName = promoteA ? "b" : "a";
      const newLeader = await startDecider(
        {
          sdd: chosenSdd,
          tokenFile,
          policy: "QUORUM",
          followers: [`${peerName}=${peer.url}`],
          ackTimeout: 10_000,
          rate: 200,
          runId: RUN,
        },
        "new leader",
      );
      procs.push(newLeader.proc);
      relayNew.to(portOf(newLeader.url));
      assert.equal(newLeader.proc.events.find((e) => e.ready)?.epoch, 2);
      await newLeader.proc.waitFor(
        "decisions acknowledged by the new leader",
        () => newLeader.proc.acks().length >= 20,
      );
      const newMax = Math.max(...newLeader.proc.acks());
      assert.ok(newMax > maxAcked);
      const rv = await eventually("the re-pointed follower to hold them", async () => {
        const x = await verifyWal(peerWal, RUN);
        return x.last_seq >= newMax ? x : undefined;
      });
      assert.equal(rv.ok, true, JSON.stringify(rv.errors));
    }),
);
