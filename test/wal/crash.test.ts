/**
 * Crash test: a child appends as fast as it can and reports every acknowledged seq; the parent
 * SIGKILLs it at a random moment, 100 rounds. After each round the WAL reopens (repairing a torn
 * tail), verifies, holds every acknowledged entry with its hash, and new appends continue the
 * chain. Rounds rotate over a few runs to keep each file small and the test fast. The kill moments
 * come from a seeded PRNG: a failure names its seed, BERNSTEIN_WAL_KILL_SEED=<seed> replays it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { verifyWal } from "../../src/wal/reader.js";
import { WalWriter } from "../../src/wal/writer.js";
import { REPO_ROOT, withSeed } from "../helpers.js";
import { assertAckedOnDisk, record, scratchWorkspace } from "./support/wal-helpers.js";

const APPENDER = path.join(REPO_ROOT, "dist", "test", "wal", "support", "appender.js");
const ROUNDS = Number(process.env.BERNSTEIN_CRASH_ROUNDS ?? 100);
const RUNS = 10;

interface Round {
  acked: Map<number, string>;
  ready: boolean;
  signal: NodeJS.Signals | null;
}

/** One child: wait until it is appending, let it run `killAfterMs` (0-40 ms), SIGKILL it. */
function crashRound(sdd: string, runId: string, concurrency: number, killAfterMs: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [APPENDER, sdd, runId, String(concurrency)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const acked = new Map<number, string>();
    let ready = false;
    let buffered = "";
    let stderr = "";
    let armed = false;
    const arm = () => {
      if (armed) return;
      armed = true;
      setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    };
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      buffered += d;
      const parts = buffered.split("\n");
      buffered = parts.pop()!; // a line cut by the kill is not an acknowledgement
      for (const line of parts) {
        if (line.startsWith("ready")) {
          ready = true;
          continue;
        }
        const [seq, hash] = line.split(" ");
        acked.set(Number(seq), hash);
        arm();
      }
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const failsafe = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(failsafe);
      if (signal !== "SIGKILL") reject(new Error(`appender exited ${code}: ${stderr}`));
      else resolve({ acked, ready, signal });
    });
  });
}

test(
  `crash test: ${ROUNDS} rounds of SIGKILL during concurrent appends lose no acknowledged entry`,
  { timeout: 600_000 },
  (t) =>
    withSeed("BERNSTEIN_WAL_KILL_SEED", async (rand) => {
      const { ws, cleanup } = await scratchWorkspace();
      try {
        const everAcked = new Map<string, Map<number, string>>();
        let totalAcked = 0;
        let repairs = 0;
        for (let round = 0; round < ROUNDS; round++) {
          const runId = `run-crash-${round % RUNS}`;
          const concurrency = [1, 8, 64][round % 3];
          const r = await crashRound(ws.root, runId, concurrency, rand() * 40);
          const acked = everAcked.get(runId) ?? new Map<number, string>();
          everAcked.set(runId, acked);
          for (const [seq, hash] of r.acked) {
            assert.ok(
              !acked.has(seq) || acked.get(seq) === hash,
              `seq ${seq} acknowledged twice with different hashes`,
            );
            acked.set(seq, hash);
          }
          totalAcked += r.acked.size;

          // Reopen: repairs a torn tail, never goes back before an acknowledged entry.
          const w = await WalWriter.open(ws, runId);
          if (w.repair) repairs++;
          const maxAcked = Math.max(-1, ...acked.keys());
          assert.ok(
            w.nextSequence > maxAcked,
            `round ${round}: reopened at ${w.nextSequence}, acked up to ${maxAcked}`,
          );
          const v = await verifyWal(ws.walFile(runId), runId);
          assert.equal(v.ok, true, `round ${round}: ${JSON.stringify(v.errors.slice(0, 3))}`);
          // Every acknowledged entry is there with its hash.
          await assertAckedOnDisk(ws.walFile(runId), acked, `round ${round}`);
          // New appends continue the chain.
          const e = await w.append(record(round));
          assert.equal(e.seq, v.last_seq + 1);
          assert.equal(e.prev_hash, v.last_hash);
          acked.set(e.seq, e.entry_hash);
          await w.close();
        }
        assert.ok(totalAcked > ROUNDS, `children acknowledged ${totalAcked} appends`);
        // Every file ends intact.
        for (const runId of everAcked.keys())
          assert.equal((await verifyWal(ws.walFile(runId), runId)).ok, true);
        t.diagnostic(
          `${totalAcked} acknowledged appends over ${ROUNDS} kills; ${repairs} torn tails repaired`,
        );
      } finally {
        await cleanup();
      }
    }),
);
