/**
 * Child process: writes checkpoints of the workspace's state in a tight loop (each one a few
 * hundred KB) until it is killed. Prints "ready" before the first write.
 */
import { writeCheckpoint } from "../../../src/checkpoint/checkpoint.js";
import { loadState } from "../../../src/checkpoint/load-state.js";
import { Workspace } from "../../../src/workspace/layout.js";

const ws = new Workspace(process.argv[2]);
const { state } = await loadState(ws);
process.stdout.write("ready\n");
for (;;) {
  await writeCheckpoint(ws, state, { retain: 3 });
}
