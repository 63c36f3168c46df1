/**
 * Child for the fail-order test with a commit gate: the gate holds the first group's
 * acknowledgement while the next group's write fails (the parent starts it under a file size
 * limit that the second, large entry crosses), then lets it through. Prints one JSON object:
 * every settlement in the order the callers saw it.
 *
 * usage: node gated-limited-appender.js <sdd> <run-id>
 */
import { Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { record } from "./wal-helpers.js";

// Past the limit a write fails with EFBIG instead of the signal ending the process.
process.on("SIGXFSZ", () => {});

const [sdd, runId] = process.argv.slice(2);
const held: Array<() => void> = [];
let gateReached: () => void = () => {};
const firstGate = new Promise<void>((resolve) => (gateReached = resolve));
const writer = await WalWriter.open(new Workspace(sdd), runId, {
  commitGate: () =>
    new Promise<void>((resolve) => {
      held.push(resolve);
      gateReached();
    }),
});
const events: string[] = [];
const settle = (label: string, p: Promise<{ seq: number; entry_hash: string }>) =>
  p.then(
    (e) => events.push(`ack ${e.seq} ${e.entry_hash}`),
    (err: Error) => events.push(`rej ${label} ${err.name}: ${err.message}`),
  );

const first = settle("0", writer.append(record(0)));
await firstGate; // the first group is durable; its gate holds the acknowledgement
const big = { ...record(1), inputs: { task_id: "T-1", attempt: 1, notes: "x".repeat(8192) } };
const failing = settle("1", writer.append(big));
await writer.drain(); // the write crossed the limit: the writer failed closed
if (!writer.failed) throw new Error("the large entry's write did not fail");
const late = settle("late", writer.append(record(2)));
for (const release of held) release();
await Promise.all([first, failing, late]);
await writer.close();
process.stdout.write(JSON.stringify({ events }) + "\n");
