import assert from "node:assert/strict";
import { rm, symlink } from "node:fs/promises";
import { test } from "node:test";
import { GroupPacing, PIPELINE_MIN_IN_FLIGHT } from "../../src/wal/group-pacing.js";
import type { WalPosition } from "../../src/wal/entry.js";
import { verifyWal } from "../../src/wal/reader.js";
import { uncommittedIndexPath } from "../../src/wal/recovery.js";
import { WalClosedError, WalWriter } from "../../src/wal/writer.js";
import { AlwaysPipelined, lines, record, scratchWorkspace } from "./support/wal-helpers.js";

/** A clock the test moves by hand (milliseconds). */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** One group of `size`: it syncs for `syncMs`; its callers then come back over `refillMs`. */
function runGroup(
  p: GroupPacing,
  clock: ReturnType<typeof manualClock>,
  size: number,
  syncMs: number,
  refillMs: number,
  inFlight = size,
): void {
  p.onGroupStart(size);
  clock.advance(syncMs);
  p.onGroupSynced(inFlight);
  p.onSettled(size);
  clock.advance(refillMs);
  for (let i = 0; i < size; i++) p.onAppend();
}

test("pacing: a fast disk and a busy CPU pipeline; a slow disk keeps merged groups", () => {
  const clock = manualClock();
  const p = new GroupPacing(clock.now);
  assert.equal(p.pipelining, false, "the first group is merged: appends issued together share one sync");
  runGroup(p, clock, 64, 5, 1);
  runGroup(p, clock, 64, 5, 1);
  assert.equal(
    p.pipelining,
    false,
    "sync 5 ms, 64 callers back in 1 ms: merged carries twice the appends per sync",
  );
  runGroup(p, clock, 64, 0.2, 0.5);
  assert.equal(p.pipelining, true, "sync 0.2 ms < 0.5 ms for the callers to come back: pipeline");
  assert.equal(p.startEarly(31), false);
  assert.equal(p.startEarly(32), true, "half of the last group back with the disk idle: it goes out");
});

test("pacing: pipelined halves stay while a sync is shorter than building both halves", () => {
  const clock = manualClock();
  const p = new GroupPacing(clock.now);
  runGroup(p, clock, 64, 0.2, 0.5);
  runGroup(p, clock, 64, 0.2, 0.5);
  assert.equal(p.pipelining, true);
  runGroup(p, clock, 32, 0.8, 0.5);
  assert.equal(p.pipelining, true, "sync 0.8 ms < 2 x 0.5 ms (the whole N's build time)");
  runGroup(p, clock, 32, 1.5, 0.5);
  assert.equal(p.pipelining, false, "sync 1.5 ms > 1 ms: back to merged groups");
});

test("pacing: a half still building when its sync is done keeps pipelining", () => {
  const clock = manualClock();
  const p = new GroupPacing(clock.now);
  runGroup(p, clock, 64, 0.2, 0.5);
  runGroup(p, clock, 64, 0.2, 0.5);
  assert.equal(p.pipelining, true);
  // The settled half has only partly come back when the next sync ends: the CPU is the bottleneck.
  p.onGroupStart(32);
  p.onSettled(32);
  for (let i = 0; i < 10; i++) p.onAppend();
  clock.advance(0.3);
  p.onGroupSynced(64);
  assert.equal(p.pipelining, true);
});

test("pacing: fewer appends in flight than the minimum never pipeline", () => {
  const clock = manualClock();
  const p = new GroupPacing(clock.now);
  const few = PIPELINE_MIN_IN_FLIGHT - 1;
  for (let i = 0; i < 3; i++) runGroup(p, clock, few, 0.01, 10);
  assert.equal(p.pipelining, false, "one caller awaiting each append syncs on the main thread");
  runGroup(p, clock, 1, 0.01, 10);
  assert.equal(p.pipelining, false);
});

test("pipelined groups: every append resolves after its sync, in call order, and the chain verifies", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-p", { pacing: new AlwaysPipelined() });
    const events: WalPosition[] = [];
    w.onDurable((p) => events.push(p));
    const total = 3000;
    let next = 0;
    const acked: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < total) {
          // Every 7th append is an intent: its uncommitted-index row is synced with the group.
          const i = next++;
          const e = await w.append(record(i, i % 7 !== 0));
          assert.equal(e.seq, i, "seqs follow call order");
          assert.ok(w.durablePosition!.seq >= e.seq, `seq ${e.seq} resolved before its sync`);
          acked.push(e.seq);
        }
      }),
    );
    assert.equal(acked.length, total);
    assert.ok(events.length > 1 && events.length < total, `groups: ${events.length}`);
    for (let i = 1; i < events.length; i++)
      assert.ok(events[i].seq > events[i - 1].seq, "positions only grow");
    assert.equal(events[events.length - 1].seq, total - 1);
    await w.close();
    const v = await verifyWal(ws.walFile("run-p"), "run-p");
    assert.equal(v.ok, true);
    assert.equal(v.entries, total);
    const rows = (await lines(uncommittedIndexPath(ws))).map((l) => JSON.parse(l) as { seq: number });
    assert.deepEqual(
      rows.map((r) => r.seq),
      Array.from({ length: Math.ceil(total / 7) }, (_, k) => k * 7),
      "every intent's index row, in seq order",
    );
  } finally {
    await cleanup();
  }
});

test("pipelined groups: a write error fails the writer closed like an unpipelined one", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = ws.walFile("run-pf");
    // A real failing device: every write to /dev/full fails with ENOSPC.
    await rm(file, { force: true });
    await symlink("/dev/full", file);
    const w = await WalWriter.open(ws, "run-pf", { pacing: new AlwaysPipelined() });
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => w.append(record(i))));
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.ok((r as PromiseRejectedResult).reason instanceof WalClosedError);
      assert.match(String((r as PromiseRejectedResult).reason.message), /failed closed.*ENOSPC/);
    }
    await assert.rejects(w.append(record(40)), /failed closed/);
    await w.close();
  } finally {
    await cleanup();
  }
});
