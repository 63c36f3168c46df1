import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { appendCostRow, CostRowsOncePerAgent, ledgerTotals } from "../../src/ledger/cost-ledger.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "support", "ledger-append.js");

function runChild(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CHILD, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    c.stdout.resume();
    c.on("error", reject);
    c.on("close", (code) => resolve(code));
  });
}

/** The sum of every row in the file, computed independently of the ledger module. */
async function sumOfRows(file: string) {
  let cost = 0;
  let input = 0;
  let rows = 0;
  for (const line of (await readFile(file, "utf8")).split("\n")) {
    try {
      const r = JSON.parse(line);
      cost += r.cost_usd;
      input += r.input_tokens;
      rows++;
    } catch {
      // not a row
    }
  }
  return { cost, input, rows };
}

test("cost totals after restarts equal the sum of every row", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    // Three "runs", each a separate process (a restart between them); more rows than any cap.
    for (const run of ["run-a", "run-b", "run-c"]) {
      assert.equal(await runChild([ws.root, "400", run]), 0);
    }
    const totals = await ledgerTotals(ws);
    const direct = await sumOfRows(ws.costLedger);
    assert.equal(totals.rows, 1200);
    assert.equal(direct.rows, 1200);
    assert.equal(totals.cost_usd, direct.cost);
    assert.equal(totals.input_tokens, direct.input);
    assert.deepEqual(totals.problems, []);
    assert.equal(totals.by_model.opus.rows + totals.by_model.sonnet.rows, 1200);
    // Python-compatible row: cost is always a float on disk.
    const first = (await readFile(ws.costLedger, "utf8")).split("\n")[0];
    assert.match(first, /"cost_usd":0\.01,/);
  } finally {
    await cleanup();
  }
});

test("a torn last ledger line is reported, not counted, and the next row is kept intact", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const row = { run_id: "r", task_id: "t", agent_id: "t#1", model: "m", input_tokens: 1, output_tokens: 2 };
    await appendCostRow(ws, { ...row, cost_usd: 1.25 });
    await appendFile(ws.costLedger, '{"agent_id":"t#1","cost_usd":9');
    const torn = await ledgerTotals(ws);
    assert.equal(torn.rows, 1);
    assert.equal(torn.cost_usd, 1.25);
    assert.deepEqual(
      torn.problems.map((p) => p.line),
      [2],
    );
    assert.match(torn.problems[0].message, /torn last line/);
    await appendCostRow(ws, { ...row, cost_usd: 2.5 });
    const after = await ledgerTotals(ws);
    assert.equal(after.rows, 2);
    assert.equal(after.cost_usd, 3.75);
    assert.deepEqual(
      after.problems.map((p) => p.line),
      [2],
      "fragment kept on its own line",
    );
    await assert.rejects(appendCostRow(ws, { ...row, cost_usd: -1 }), /cost_usd/);
  } finally {
    await cleanup();
  }
});

test("a usage is written once per agent id, also across appenders (a decision finished again after a crash)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const usage = { cost_usd: 0.5, input_tokens: 10, output_tokens: 20, model: "m" };
    await appendCostRow(ws, { run_id: "r0", task_id: "a", agent_id: "a#1", ...usage });
    const rows = new CostRowsOncePerAgent(ws);
    assert.equal(
      await rows.append({ run_id: "r1", task_id: "a", agent_id: "a#1" }, usage),
      false,
      "row of an earlier run",
    );
    assert.equal(await rows.append({ run_id: "r1", task_id: "b", agent_id: "b#1" }, usage), true);
    assert.equal(await rows.append({ run_id: "r1", task_id: "b", agent_id: "b#1" }, usage), false, "repeat");
    const nothing = { cost_usd: 0, input_tokens: 0, output_tokens: 0, model: null };
    assert.equal(
      await rows.append({ run_id: "r1", task_id: "c", agent_id: "c#1" }, nothing),
      false,
      "no usage",
    );
    assert.equal(
      await new CostRowsOncePerAgent(ws).append({ run_id: "r2", task_id: "b", agent_id: "b#1" }, usage),
      false,
    );
    const totals = await ledgerTotals(ws);
    assert.equal(totals.rows, 2);
    assert.equal(totals.cost_usd, 1);
    const written = (await readFile(ws.costLedger, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      written.map((r) => [r.run_id, r.agent_id, r.model, r.input_tokens, r.output_tokens]),
      [
        ["r0", "a#1", "m", 10, 20],
        ["r1", "b#1", "m", 10, 20],
      ],
    );
  } finally {
    await cleanup();
  }
});
