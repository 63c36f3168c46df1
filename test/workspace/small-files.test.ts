import assert from "node:assert/strict";
import { test } from "node:test";
import { mapConcurrently } from "../../src/workspace/small-files.js";

/** Calls that finish when `release(i)` is called, in any order the test chooses. */
function gatedCalls() {
  const gates = new Map<number, () => void>();
  let pending = 0;
  let most = 0;
  const started: number[] = [];
  const fn = async (item: number, i: number): Promise<number> => {
    started.push(i);
    pending++;
    most = Math.max(most, pending);
    await new Promise<void>((r) => gates.set(i, r));
    pending--;
    if (item < 0) throw new Error(`item ${i} failed`);
    return item * 10;
  };
  const release = (i: number) => gates.get(i)!();
  const waitStarted = async (n: number) => {
    while (started.length < n) await new Promise((r) => setImmediate(r));
  };
  return { fn, release, waitStarted, started, most: () => most };
}

test("results come in the items' order whatever order the calls finish in, never more than the limit pending", async () => {
  const g = gatedCalls();
  const items = Array.from({ length: 10 }, (_, i) => i + 1);
  const all = mapConcurrently(items, 3, g.fn);
  // Each time, the newest call still running finishes first: a lane frees, the next item starts.
  const finished = new Set<number>();
  for (let done = 0; done < items.length; done++) {
    await g.waitStarted(Math.min(items.length, done + 3));
    const newest = g.started.filter((i) => !finished.has(i)).pop()!;
    finished.add(newest);
    g.release(newest);
  }
  assert.deepEqual(
    await all,
    items.map((x) => x * 10),
  );
  assert.equal(g.most(), 3);
});

test("a rejection starts no further call and is thrown once the calls already started have settled", async () => {
  const g = gatedCalls();
  const items = [1, -2, 3, 4, 5, 6];
  let settled = false;
  const all = mapConcurrently(items, 2, g.fn).finally(() => (settled = true));
  await g.waitStarted(2);
  g.release(1); // item -2 fails
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(g.started, [0, 1], "no call starts after the failure");
  assert.equal(settled, false, "the call still running (item 0) is waited for");
  g.release(0);
  await assert.rejects(all, /item 1 failed/);
  assert.deepEqual(g.started, [0, 1]);
});

test("no items, and a limit above their number", async () => {
  assert.deepEqual(await mapConcurrently([], 16, async (x: number) => x), []);
  assert.deepEqual(await mapConcurrently([1, 2], 16, async (x) => x + 1), [2, 3]);
});
