/**
 * Child process: replays the previous runs of a workspace with idempotent handlers whose effect
 * is a file `effects/<entry_hash>`. Every call is logged to `invocations.log`. With KILL_AFTER=n
 * the process SIGKILLs itself right after the n-th handler's effect, before replay can write the
 * idempotency marker. Prints the summary as JSON.
 */
import { appendFile, stat } from "node:fs/promises";
import path from "node:path";
import { STATE_DECISIONS } from "../../../src/state/reducer.js";
import type { WalEntry } from "../../../src/wal/entry.js";
import { replayWal, type ReplayHandler } from "../../../src/state/replay.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { durableCreate, durableMkdir } from "../../../src/workspace/durable.js";
import { Workspace } from "../../../src/workspace/layout.js";

const [sdd, runId, effectsDir] = process.argv.slice(2);
const killAfter = Number(process.env.KILL_AFTER ?? -1);
const ws = new Workspace(sdd);
await durableMkdir(effectsDir);
let calls = 0;
const handler: ReplayHandler = async (entry: WalEntry) => {
  await appendFile(path.join(effectsDir, "..", "invocations.log"), entry.entry_hash + "\n");
  const effect = path.join(effectsDir, entry.entry_hash);
  // Idempotent: the effect is done at most once, whatever the number of calls.
  const done = await stat(effect).then(
    () => true,
    () => false,
  );
  if (!done) await durableCreate(effect, entry.decision_type);
  if (++calls === killAfter) process.kill(process.pid, "SIGKILL");
};
const writer = await WalWriter.open(ws, runId);
const summary = await replayWal(ws, {
  currentRunId: runId,
  writer,
  handlers: Object.fromEntries(STATE_DECISIONS.map((t) => [t, handler])),
});
await writer.close({ markClosed: true });
process.stdout.write(JSON.stringify(summary) + "\n");
