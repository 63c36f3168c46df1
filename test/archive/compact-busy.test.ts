/**
 * The running archiver's background compaction while its cycles ship large pieces (at least
 * 1/64 of the target each: the writer is busy): groups of such pieces are left alone, smaller
 * pieces still merge, and the first cycle with nothing to ship merges the large ones too. A
 * folder store and the Archiver itself, its cycles stepped by the test (a 60 s interval), so
 * which cycle was busy is not left to timing.
 */
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Archiver, type ArchiverEvent } from "../../src/archive/archiver.js";
import { LocalStore } from "../../src/storage/local-store.js";
import { scratchDir, waitFor } from "../helpers.js";
import { walSegmentsOf } from "./support/archive-bursts.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-busy";
/** Pieces of PER decisions (a WAL line is over 200 bytes) are large against this target. */
const TARGET = 32 * 1024;
const PER = 40;

describe("background compaction while the cycles ship large pieces", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: LocalStore;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-compact-busy-");
    f = await archiveFixture(path.join(scratch.dir, "ws"));
    store = new LocalStore(path.join(scratch.dir, "store"));
    await mkdir(store.root); // made by the command in front of the archiver
  });
  after(async () => {
    await scratch.cleanup();
  });

  const archiver = (events: ArchiverEvent[]) =>
    new Archiver({
      store,
      ws: f.ws,
      intervalMs: 60_000,
      snapshotIntervalMs: 86_400_000,
      compactTargetBytes: TARGET,
      log: (e) => events.push(e),
    });

  /** The loop's first cycle runs, then its compaction; resolves once that compaction completed. */
  const firstLoopCompaction = async (a: Archiver) => {
    const before = a.health.snapshot().last_compaction_at;
    a.start((err) => assert.fail(String(err)));
    try {
      await waitFor("a background compaction", () => {
        const s = a.health.snapshot();
        return s.last_compaction_at !== before || s.last_compaction_error !== null;
      });
    } finally {
      await a.finish();
    }
    assert.equal(a.health.snapshot().last_compaction_error, null);
  };

  const entriesPerSegment = async () =>
    (await walSegmentsOf(store, RUN)).map((s) => s.lastSeq! - s.firstSeq! + 1);

  it("leaves groups of large pieces while busy, merges them at the first idle cycle", async () => {
    const events: ArchiverEvent[] = [];
    const busy = archiver(events);
    await busy.step(); // generation and snapshot
    for (let i = 0; i < 8; i++) {
      await appendDecisions(f.ws, RUN, PER, i * PER);
      await busy.step();
    }
    const piece = (await walSegmentsOf(store, RUN))[0]!.size;
    assert.ok(piece * 64 >= TARGET, `a piece of ${piece} bytes is large against ${TARGET}`);
    // The loop's first cycle ships one more large piece: the compaction it starts finds 9 pieces.
    await appendDecisions(f.ws, RUN, PER, 8 * PER);
    await firstLoopCompaction(busy);
    assert.deepEqual(await entriesPerSegment(), Array(9).fill(PER), JSON.stringify(events));
    assert.ok(!events.some((e) => e.event === "compacted"), JSON.stringify(events));

    // An archiver resumed on the generation: one more piece, then a loop cycle with nothing to ship.
    const idleEvents: ArchiverEvent[] = [];
    const idle = archiver(idleEvents);
    await appendDecisions(f.ws, RUN, PER, 9 * PER);
    await idle.step();
    await firstLoopCompaction(idle);
    const after = await entriesPerSegment();
    assert.ok(after.length < 10 && after.some((n) => n > PER), JSON.stringify(after));
    assert.equal(
      after.reduce((a, b) => a + b, 0),
      10 * PER,
      "the merged segments tile the WAL, no entry twice",
    );
  });
});
