/**
 * Child for the pipelined-failure test: 64 callers append through pipelined groups until a write
 * fails (the parent starts it under a file size limit, so a write in the middle of the run gets
 * EFBIG). Prints one JSON object: every settlement in the order it happened, how many group syncs
 * were still running when the first rejection arrived, and whether an append after the failure
 * was rejected too.
 *
 * usage: node overlap-failer.js <sdd> <run-id>
 */
import { Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { AlwaysPipelined, record } from "./wal-helpers.js";

// Over the limit a write fails with EFBIG instead of the signal killing the process.
process.on("SIGXFSZ", () => {});

const [sdd, runId] = process.argv.slice(2);
const writer = await WalWriter.open(new Workspace(sdd), runId, { pacing: new AlwaysPipelined() });
const events: string[] = [];
let next = 0;
let failed = false;
let syncsAtFailure = -1;
async function caller(): Promise<void> {
  while (!failed) {
    const i = next++;
    try {
      const e = await writer.append(record(i));
      events.push(`ack ${e.seq} ${e.entry_hash}`);
    } catch (err) {
      if (!failed) syncsAtFailure = writer.syncsInFlight;
      failed = true;
      events.push(`rej ${i} ${(err as Error).name}: ${(err as Error).message}`);
    }
  }
}
await Promise.all(Array.from({ length: 64 }, () => caller()));
const late = await writer.append(record(next)).then(
  () => "acknowledged",
  (err: Error) => err.name,
);
await writer.close();
process.stdout.write(JSON.stringify({ events, syncsAtFailure, late }) + "\n");
