/**
 * Replication bench: a leader (this process: WAL writer + replication leader) making decisions
 * at a fixed rate (default 1,000/s) with two followers (real `bernstein replicate follow`
 * processes on 127.0.0.1), once per acknowledgement policy. Measures
 *   - commit latency (append() call → resolved: local fsync + policy) p50/p99 per policy;
 *   - follower lag, sampled every 10 ms from the leader's view, in entries and ms (age of the
 *     oldest entry a follower lacks), p50/p99, per policy.
 * Baseline, same run: the same writer and rate without replication (a plain fsynced WAL).
 *
 * `npm run bench:replication -- --json` prints one JSON object; `--help` lists the options.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ReplicationLeader } from "../src/replication/leader.js";
import { startLeaderFromFlags } from "../src/cli/replication-options.js";
import { WalWriter } from "../src/wal/writer.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";
import { initWorkspace } from "../src/workspace/layout.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(REPO, "bin", "bernstein");

const options = benchOptions({
  invocation: "npm run bench:replication --",
  about:
    "Commit latency and follower lag of WAL replication, per acknowledgement policy, against a plain WAL.",
  options: {
    json: JSON_OUTPUT,
    rate: { kind: "number", default: 1000, min: 1, help: "decisions per second at the leader" },
    seconds: { kind: "number", default: 5, min: 1, help: "seconds of decisions" },
  },
});
const RATE = options.rate;
const SECONDS = options.seconds;
const JSON_OUT = options.json;

function pct(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const round = (v: number | null, d = 2): number | null => (v === null ? null : Number(v.toFixed(d)));

function startFollower(
  leaderUrl: string,
  region: string,
  sdd: string,
  tokenFile: string,
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      "--sdd",
      sdd,
      "--json",
      "--quiet",
      "replicate",
      "follow",
      "--leader",
      leaderUrl,
      "--follower-name",
      region,
      "--token-file",
      tokenFile,
      "--wait-ms",
      "1000",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      try {
        JSON.parse(out);
        resolve(child);
      } catch {
        // not complete yet
      }
    });
    child.on("exit", (code) => reject(new Error(`follower ${region} exited ${code}`)));
  });
}

async function drive(
  writer: WalWriter,
  leader: ReplicationLeader | null,
): Promise<{ commit: number[]; lagEntries: number[]; lagMs: number[]; rejected: number; achieved: number }> {
  const commit: number[] = [];
  const lagEntries: number[] = [];
  const lagMs: number[] = [];
  let rejected = 0;
  let issued = 0;
  const total = RATE * SECONDS;
  const pending = new Set<Promise<unknown>>();
  let sampling = true;
  const t0 = performance.now();
  const sampler = (async () => {
    while (sampling && leader) {
      const views = await leader.followerViews();
      if (process.env.BENCH_TRACE)
        process.stderr.write(
          `${Math.round(performance.now() - t0)} ${views.map((v) => v.lag_entries).join(" ")}\n`,
        );
      for (const f of views) {
        lagEntries.push(f.lag_entries);
        if (f.lag_seconds !== null) lagMs.push(f.lag_seconds * 1000);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
    while (issued < due) {
      const start = performance.now();
      const n = issued++;
      const p = writer
        .append({ decision_type: "task_claimed", inputs: { task_id: `t-${n}`, attempt: 1 }, committed: true })
        .then(
          () => void commit.push(performance.now() - start),
          () => void rejected++,
        );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - t0) / 1000;
  sampling = false;
  await sampler;
  return { commit, lagEntries, lagMs, rejected, achieved: total / elapsed };
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-repl-"));
  process.env.BERNSTEIN_AUDIT_KEY_PATH ??= path.join(root, "audit.key");
  const tokenFile = path.join(root, "token");
  await writeFile(tokenFile, randomBytes(24).toString("hex"), { mode: 0o600 });
  const result: Record<string, unknown> = {
    bench: "replication",
    rate_per_s: RATE,
    seconds: SECONDS,
    followers: 2,
  };
  try {
    // Baseline: the same writer, no replication.
    {
      const { workspace } = await initWorkspace(path.join(root, "base", ".sdd"));
      const writer = await WalWriter.open(workspace, "run-bench");
      const r = await drive(writer, null);
      await writer.close();
      result.baseline_no_replication = {
        commit_ms_p50: round(pct(r.commit, 50), 3),
        commit_ms_p99: round(pct(r.commit, 99), 3),
        achieved_per_s: round(r.achieved, 0),
      };
    }
    const policies: Record<string, unknown> = {};
    for (const policy of ["LEADER_ONLY", "QUORUM", "ALL"]) {
      const dir = path.join(root, policy);
      const { workspace } = await initWorkspace(path.join(dir, "L", ".sdd"));
      const leader = await startLeaderFromFlags(
        workspace,
        { flag: "--listen", value: "127.0.0.1:0" },
        {
          tokenFile,
          maxLagEntries: 100,
          unreachableAfter: 3,
          ackPolicy: policy,
          follower: ["a", "b"],
          ackTimeout: 10_000,
          onAckTimeout: "stop",
          probeInterval: 1000,
        },
        { log: (l) => process.stderr.write(l + "\n") },
      );
      const writer = await WalWriter.open(workspace, "run-bench", { commitGate: leader.commitGate });
      leader.attachWriter(writer);
      const followers = [
        await startFollower(leader.url, "a", path.join(dir, "A", ".sdd"), tokenFile),
        await startFollower(leader.url, "b", path.join(dir, "B", ".sdd"), tokenFile),
      ];
      // Let both followers connect and hold the warm-up entry before measuring.
      const warm = await writer.append({ decision_type: "bench_warmup", inputs: {}, committed: true });
      for (let i = 0; i < 400; i++) {
        const v = await leader.followerViews();
        if (v.length === 2 && v.every((f) => (f.acked["run-bench"] ?? -1) >= warm.seq)) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const r = await drive(writer, leader);
      await writer.close();
      for (const f of followers) f.kill("SIGTERM");
      await leader.close();
      policies[policy] = {
        commit_ms_p50: round(pct(r.commit, 50), 3),
        commit_ms_p99: round(pct(r.commit, 99), 3),
        follower_lag_entries_p50: pct(r.lagEntries, 50),
        follower_lag_entries_p99: pct(r.lagEntries, 99),
        follower_lag_ms_p50: round(pct(r.lagMs, 50), 1),
        follower_lag_ms_p99: round(pct(r.lagMs, 99), 1),
        achieved_per_s: round(r.achieved, 0),
        rejected: r.rejected,
        lag_samples: r.lagEntries.length,
      };
    }
    result.policies = policies;
    const base = result.baseline_no_replication as { commit_ms_p50: number };
    const q = policies.QUORUM as { commit_ms_p50: number };
    const lo = policies.LEADER_ONLY as Record<string, number>;
    result.follower_lag_at_rate = {
      entries_p50: lo.follower_lag_entries_p50,
      entries_p99: lo.follower_lag_entries_p99,
      ms_p50: lo.follower_lag_ms_p50,
      ms_p99: lo.follower_lag_ms_p99,
    };
    result.ratio_quorum_commit_p50_vs_baseline = round(q.commit_ms_p50 / base.commit_ms_p50, 2);
    result.python_original = "no transport (in-memory scaffold): nothing to compare";
    result.peak_rss_mb = round(process.resourceUsage().maxRSS / 1024, 1);
    result.note = "machine shared with other engineers: figures are noisy";
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  process.stdout.write(JSON_OUT ? JSON.stringify(result) + "\n" : JSON.stringify(result, null, 2) + "\n");
}

await main();
