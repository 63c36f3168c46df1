import assert from "node:assert/strict";
import { rm, symlink } from "node:fs/promises";
import { test } from "node:test";
import { GroupPacing, OVERLAP_MIN_GROUP, PIPELINE_MIN_IN_FLIGHT } from "../../src/wal/group-pacing.js";
import type { WalPosition } from "../../src/wal/entry.js";
import { verifyWal } from "../../src/wal/reader.js";
import { uncommittedIndexPath } from "../../src/wal/recovery.js";
import { WalClosedError, WalWriter } from "../../src/wal/writer.js";
import { AlwaysPipelined, lines, record, scratchWorkspace } from "./support/wal-helpers.js";

test("pacing: enough appends in flight pipeline, fewer sync on the main thread", () => {
  const p = new GroupPacing();
  assert.equal(p.pipelining, false, "the first group is merged: appends issued together share one sync");
  p.onGroupStart(64);
  p.onGroupSynced(64);
  assert.equal(p.pipelining, true, "64 in flight: groups pipeline");
  assert.equal(p.startEarly(31), false);
  assert.equal(p.startEarly(32), true, "half of the last group back with the disk idle: it goes out");
  p.onGroupSynced(PIPELINE_MIN_IN_FLIGHT - 1);
  assert.equal(p.pipelining, false, "one caller awaiting each append syncs on the main thread");
});

test("pacing: a group beside running syncs halves the last one, never below the minimum", () => {
  const p = new GroupPacing();
  p.onGroupStart(64);
  p.onGroupSynced(64);
  assert.equal(p.startBesideSyncs(31), false);
  assert.equal(p.startBesideSyncs(32), true);
  p.onGroupStart(32);
  assert.equal(p.startBesideSyncs(16), true);
  p.onGroupStart(16);
  assert.equal(p.startBesideSyncs(8), false, "groups of one would cost a sync each");
  assert.equal(p.startBesideSyncs(OVERLAP_MIN_GROUP), true);
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
