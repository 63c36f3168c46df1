import assert from "node:assert/strict";
import { test } from "node:test";
import { Waker } from "../../src/orchestrator/waker.js";

const HOUR_MS = 3_600_000;

/** Whether `p` settles within `turns` rounds of the event loop. */
async function settlesSoon(p: Promise<void>, turns = 50): Promise<boolean> {
  let settled = false;
  void p.then(() => (settled = true));
  for (let i = 0; i < turns && !settled; i++) await new Promise((r) => setImmediate(r));
  return settled;
}

test("a wake while the loop is busy ends its next sleep at once (not a poll interval later)", async () => {
  const waker = new Waker(HOUR_MS);
  try {
    waker.wake();
    assert.equal(await settlesSoon(waker.sleep()), true);
    // One wake ends one sleep: the one after waits again.
    const next = waker.sleep();
    assert.equal(await settlesSoon(next), false);
    waker.wake();
    assert.equal(await settlesSoon(next), true);
  } finally {
    waker.wake(); // a sleep left pending by a failure clears its hour-long timer
  }
});

test("wakes while busy count once", async () => {
  const waker = new Waker(HOUR_MS);
  try {
    waker.wake();
    waker.wake();
    assert.equal(await settlesSoon(waker.sleep()), true);
    const next = waker.sleep();
    assert.equal(await settlesSoon(next), false);
    waker.wake();
    assert.equal(await settlesSoon(next), true);
  } finally {
    waker.wake();
  }
});

test("a sleep until a deadline ends at it, however long the poll interval, not before", async () => {
  const waker = new Waker(HOUR_MS);
  try {
    const at = Date.now() + 50;
    const slept = (async () => {
      // A timer may fire a millisecond early: the loop then sleeps the rest, as here.
      while (Date.now() < at) await waker.sleep(at);
      return "at the deadline";
    })();
    let bound: NodeJS.Timeout | undefined;
    const stuck = new Promise((r) => (bound = setTimeout(() => r("still asleep after 10 s"), 10_000)));
    assert.equal(await Promise.race([slept, stuck]), "at the deadline");
    clearTimeout(bound);
    assert.equal(await settlesSoon(waker.sleep(Date.now() + HOUR_MS)), false, "a later deadline waits");
  } finally {
    waker.wake();
    waker.close();
  }
});
