/**
 * Crash-test child: opens the WAL of a run and appends as fast as it can with `concurrency`
 * callers, printing `<seq> <entry_hash>` on stdout for every acknowledged append (stdout to a
 * pipe is synchronous on Linux: once printed, the parent has it). Runs until killed.
 *
 * usage: node appender.js <sdd> <run-id> <concurrency>
 */
import { Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";

const [sdd, runId, concurrencyText] = process.argv.slice(2);
const ws = new Workspace(sdd);
const writer = await WalWriter.open(ws, runId);
process.stdout.write(`ready ${writer.nextSequence} ${writer.repair ? writer.repair.cut_bytes : 0}\n`);
let n = 0;
async function caller(id: number): Promise<void> {
  while (true) {
    const i = n++;
    const committed = i % 3 !== 0;
    const e = await writer.append({
      decision_type: committed ? "task_completed" : "task_claimed",
      inputs: { task_id: `T-${i}`, attempt: 1, caller: id },
      output: committed ? { exit_code: 0, cost_usd: 0.5 } : {},
      committed,
    });
    process.stdout.write(`${e.seq} ${e.entry_hash}\n`);
  }
}
await Promise.all(Array.from({ length: Number(concurrencyText) }, (_, id) => caller(id)));
