/**
 * A stand-in for a running orchestrator (test support): holds the workspace lock, makes paired
 * decisions (intent, state change on disk, commit) and calls the snapshot responder between
 * decisions, never inside one. With --no-responder it never answers (an old or busy writer).
 * Prints "ready" once the first decision is durable.
 */
import { writeFile } from "node:fs/promises";
import { SnapshotResponder } from "../../../src/dr/snapshot.js";
import { Workspace } from "../../../src/workspace/layout.js";
import { acquireLock } from "../../../src/workspace/lock.js";
import { WalWriter } from "../../../src/wal/writer.js";

const [root, runId, mode] = process.argv.slice(2);
const ws = new Workspace(root!);
await acquireLock(ws, "test live orchestrator");
const wal = await WalWriter.open(ws, runId!);
const responder = new SnapshotResponder(ws);
let n = 0;
for (;;) {
  const inputs = { task_id: `T-${n}`, attempt: 1 };
  await wal.append({ decision_type: "task_claimed", inputs, committed: false });
  await writeFile(ws.p("backlog", "claimed", `T-${n}.md`), `task ${n}\n`);
  await wal.append({ decision_type: "task_claimed", inputs, committed: true });
  if (n === 0) process.stdout.write("ready\n");
  n++;
  if (mode !== "--no-responder") {
    const pos = wal.durablePosition;
    await responder.atDecisionBoundary(() => ({
      [runId!]: pos ? { seq: pos.seq, entry_hash: pos.entry_hash } : null,
    }));
  }
}
