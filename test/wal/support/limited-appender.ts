/**
 * Child for the fail-order test: 64 callers append through pipelined groups until a write fails
 * (the parent starts it under a file size limit, so a write in the middle of the run gets EFBIG).
 * Prints one JSON object: every settlement in the order the callers saw it, and what an append
 * after the failure got.
 *
 * usage: node limited-appender.js <sdd> <run-id>
 */
import { Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { AlwaysPipelined, record } from "./wal-helpers.js";

// Past the limit a write fails with EFBIG instead of the signal ending the process.
process.on("SIGXFSZ", () => {});

const [sdd, runId] = process.argv.slice(2);
const writer = await WalWriter.open(new Workspace(sdd), runId, { pacing: new AlwaysPipelined() });
const events: string[] = [];
let next = 0;
let failed = false;
async function caller(): Promise<void> {
  while (!failed) {
    const i = next++;
    try {
      const e = await writer.append(record(i));
      events.push(`ack ${e.seq} ${e.entry_hash}`);
    } catch (err) {
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
process.stdout.write(JSON.stringify({ events, late }) + "\n");
