import assert from "node:assert/strict";
import { test } from "node:test";
import { canonicalJson, parseJson, PyFloat } from "../../src/json/canonical.js";
import {
  applyEntry,
  cloneState,
  emptyState,
  StateBuilder,
  stateCounts,
  type OrchestratorState,
} from "../../src/state/reducer.js";
import { randomDecisions } from "./support/decisions.js";

const fakeHash = (i: number) => i.toString(16).padStart(64, "0");

test("the reducer follows the decision vocabulary; only commits change state", () => {
  let s = emptyState();
  const e = (seq: number, decision_type: string, inputs: object, output: object = {}, committed = true) => ({
    seq,
    decision_type,
    inputs: inputs as never,
    output: output as never,
    committed,
    entry_hash: fakeHash(seq),
  });
  s = applyEntry(
    s,
    "run-1",
    e(0, "task_created", { task: { id: "T-1", title: "x", weight: new PyFloat(2) } }, {}, false),
  );
  assert.deepEqual(s.tasks, {}, "an intent changes nothing");
  assert.deepEqual(s.wal_position, { run_id: "run-1", seq: 0, entry_hash: fakeHash(0) });
  s = applyEntry(
    s,
    "run-1",
    e(1, "task_created", { task: { id: "T-1", title: "x", weight: new PyFloat(2) } }),
  );
  assert.equal(s.tasks["T-1"].state, "open");
  s = applyEntry(s, "run-1", e(2, "task_claimed", { task_id: "T-1", attempt: 1 }));
  assert.equal(s.tasks["T-1"].state, "claimed");
  assert.equal(s.tasks["T-1"].attempt, 1);
  s = applyEntry(s, "run-1", e(3, "task_spawn_confirmed", { task_id: "T-1", attempt: 1, agent_id: "T-1#1" }));
  assert.deepEqual(Object.keys(s.agent_sessions), ["T-1#1"]);
  s = applyEntry(s, "run-1", e(4, "tick_start", {}));
  const before = cloneState(s);
  const after = applyEntry(
    s,
    "run-1",
    e(
      5,
      "task_completed",
      { task_id: "T-1", attempt: 1 },
      { cost_usd: 0.5, input_tokens: 10, output_tokens: 2, model: "m" },
    ),
  );
  assert.deepEqual(s, before, "applyEntry does not modify its argument");
  assert.equal(after.tasks["T-1"].state, "done");
  assert.deepEqual(after.agent_sessions, {});
  assert.equal(after.cost.cost_usd, 0.5);
  assert.deepEqual(stateCounts(after), {
    task_count: 1,
    completed_count: 1,
    failed_count: 0,
    open_count: 0,
    claimed_count: 0,
  });
});

test("fold(applyEntry) equals StateBuilder and survives a canonical JSON round trip", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const decisions = randomDecisions(seed, 400);
    let pure: OrchestratorState = emptyState();
    const builder = new StateBuilder();
    decisions.forEach((d, seq) => {
      const entry = { ...d, seq, entry_hash: fakeHash(seq) };
      pure = applyEntry(pure, "run-x", entry);
      builder.apply("run-x", entry);
    });
    assert.deepEqual(builder.state, pure);
    assert.deepEqual(parseJson(canonicalJson(pure)), pure);
  }
});
