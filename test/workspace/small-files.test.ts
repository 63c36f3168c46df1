import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import { inTurns } from "../../src/workspace/small-files.js";

/** Work that holds the thread for `ms`, as a blocking read does. */
const hold = (ms: number): void => {
  for (const end = performance.now() + ms; performance.now() < end;);
};

test("inTurns gives the results in the items' order, each item once", async () => {
  const seen: number[] = [];
  const out = await inTurns([5, 3, 9, 1], (x) => {
    seen.push(x);
    return x * 2;
  });
  assert.deepEqual(out, [10, 6, 18, 2]);
  assert.deepEqual(seen, [5, 3, 9, 1]);
  assert.deepEqual(await inTurns([], (x: number) => x), []);
});

test("inTurns lets the event loop run between turns of blocking work", async () => {
  let done = 0;
  let doneWhenLoopRan: number | undefined;
  setImmediate(() => (doneWhenLoopRan = done));
  // 64 items of 0.5 ms: 32 ms of blocking work, far more than one turn.
  await inTurns(
    Array.from({ length: 64 }, (_, i) => i),
    () => {
      hold(0.5);
      done++;
    },
  );
  assert.ok(doneWhenLoopRan !== undefined, "the event loop did not run until the work ended");
  assert.ok(doneWhenLoopRan > 0 && doneWhenLoopRan < 64, `the loop ran after ${doneWhenLoopRan} of 64 items`);
});

test("a throw ends the work and is thrown from inTurns", async () => {
  const seen: number[] = [];
  await assert.rejects(
    inTurns([1, 2, 3, 4], (x) => {
      seen.push(x);
      if (x === 2) throw new Error("item 2 failed");
      return x;
    }),
    /item 2 failed/,
  );
  assert.deepEqual(seen, [1, 2]);
});
