/**
 * A leader process for the replication tests and bench: runs the replication leader and a WAL
 * writer whose commit gate is the leader's, and makes decisions at a given rate. Prints one JSON
 * line per event on stdout (synchronous on a pipe, so what was printed before a SIGKILL is all
 * there): {"ready":...}, {"ack":seq,"ms":latency}, {"reject":seq,"error":...}.
 *
 * argv[2]: JSON {sdd, listen, tokenFile, policy, followers, ackTimeout, onAckTimeout, rate, count, runId,
 *                probeInterval, maxLagEntries, maxRetries, startGate}
 * With `startGate` (a file path), decisions start only once that file exists.
 */
import { existsSync } from "node:fs";
import { initWorkspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { startLeaderFromFlags } from "../../../src/cli/replication-options.js";

interface Args {
  sdd: string;
  listen?: string;
  tokenFile: string;
  policy?: string;
  followers?: string[];
  ackTimeout?: number;
  onAckTimeout?: string;
  rate?: number;
  count?: number;
  runId?: string;
  probeInterval?: number;
  maxLagEntries?: number;
  maxRetries?: number;
  maxInFlight?: number;
  startGate?: string;
}

const a = JSON.parse(process.argv[2]) as Args;
const emit = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + "\n");

const { workspace: ws } = await initWorkspace(a.sdd);
const leader = await startLeaderFromFlags(
  ws,
  { flag: "--listen", value: a.listen ?? "127.0.0.1:0" },
  {
    tokenFile: a.tokenFile,
    maxLagEntries: a.maxLagEntries ?? 100,
    unreachableAfter: a.maxRetries ?? 3,
    ackPolicy: a.policy ?? "LEADER_ONLY",
    follower: a.followers ?? [],
    ackTimeout: a.ackTimeout ?? 5000,
    onAckTimeout: a.onAckTimeout ?? "stop",
    probeInterval: a.probeInterval ?? 200,
  },
  { log: (line) => process.stderr.write(line + "\n") },
);
const runId = a.runId ?? "run-replication-test";
const writer = await WalWriter.open(ws, runId, { commitGate: leader.commitGate });
leader.attachWriter(writer);
emit({ ready: true, url: leader.url, pid: process.pid, epoch: leader.epoch });

const rate = a.rate ?? 200;
const count = a.count ?? Infinity;
const maxInFlight = a.maxInFlight ?? 256;
let issued = 0;
let inFlight = 0;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});

function decide(): void {
  try {
    leader.assertCanDecide();
  } catch (err) {
    emit({ refused: issued, error: (err as Error).message });
    return;
  }
  const t0 = performance.now();
  inFlight++;
  const n = issued++;
  writer
    .append({ decision_type: "task_claimed", inputs: { task_id: `t-${n}`, attempt: 1 }, committed: true })
    .then(
      (e) => emit({ ack: e.seq, ms: performance.now() - t0 }),
      (err: Error) => emit({ reject: n, error: err.message }),
    )
    .finally(() => inFlight--);
}

if (a.startGate) {
  while (!stopping && !existsSync(a.startGate)) await new Promise((r) => setTimeout(r, 20));
}
const start = performance.now();
while (!stopping && issued < count) {
  if (leader.policy.state === "HALTED" || leader.policy.state === "FENCED") {
    // The leader stopped making decisions; try one now and then to show it is still refused.
    decide();
    await new Promise((r) => setTimeout(r, 100));
    continue;
  }
  const due = Math.floor(((performance.now() - start) / 1000) * rate);
  while (issued < Math.min(due, count) && inFlight < maxInFlight) decide();
  await new Promise((r) => setTimeout(r, Math.max(1, Math.min(20, 1000 / rate))));
}
await writer.drain();
emit({ done: true, issued });
if (!stopping) await new Promise<void>((r) => process.once("SIGTERM", () => r()));
await writer.close();
await leader.close();
