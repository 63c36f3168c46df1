/**
 * A burst of appends synced with blocking calls settles group after group in microtasks; the
 * writer still lets the event loop turn, so timers and I/O of the same process (an in-process
 * archiver, replication, a status request) are not held until the burst ends.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GroupPacing } from "../../src/wal/group-pacing.js";
import { verifyWal } from "../../src/wal/reader.js";
import { WalWriter } from "../../src/wal/writer.js";
import { record, scratchWorkspace } from "./support/wal-helpers.js";

/** Merged groups only: each group's write and fdatasync block, so no I/O callback ends a group. */
class NeverPipelined extends GroupPacing {
  override onGroupSynced(): void {
    this.pipelining = false;
  }
}

for (const inFlight of [1, 64]) {
  test(`blocking groups, ${inFlight} in flight: a timer set before the burst fires while it runs`, async () => {
    const { ws, cleanup } = await scratchWorkspace();
    try {
      const w = await WalWriter.open(ws, "run-turn", { pacing: new NeverPipelined() });
      // Far more groups than one loop turn allows (each is a write and an fdatasync).
      const bound = inFlight === 1 ? 3000 : 20_000;
      let fired = false;
      let atFire = -1;
      let next = 0;
      setTimeout(() => {
        fired = true;
        atFire = next;
      }, 1);
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (!fired && next < bound) await w.append(record(next++, true));
        }),
      );
      assert.ok(fired && atFire < bound, `the timer waited for all ${bound} appends`);
      await w.close();
      const v = await verifyWal(ws.walFile("run-turn"), "run-turn");
      assert.equal(v.ok, true);
      assert.equal(v.entries, next);
    } finally {
      await cleanup();
    }
  });
}
