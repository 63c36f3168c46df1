/** Child process: appends `count` cost rows (cost = (i + 1) * 0.01 + offset) and prints each ack. */
import { appendCostRow } from "../../../src/ledger/cost-ledger.js";
import { Workspace } from "../../../src/workspace/layout.js";

const [sdd, countText, runId] = process.argv.slice(2);
const ws = new Workspace(sdd);
for (let i = 0; i < Number(countText); i++) {
  await appendCostRow(ws, {
    run_id: runId,
    task_id: `T-${i}`,
    agent_id: `T-${i}#1`,
    model: i % 2 ? "opus" : "sonnet",
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    cost_usd: (i + 1) * 0.01,
  });
  process.stdout.write(`${i}\n`);
}
