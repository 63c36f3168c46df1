/**
 * The running archiver's background compaction while its cycles ship large pieces (at least
 * 1/64 of the target each: the writer is busy): it does not look (no listing of the store, which
 * grows by a piece a cycle), and the first cycle with nothing to ship merges the large pieces. A
 * folder store and the Archiver itself, its first cycles stepped by the test, so which cycle was
 * busy is not left to timing.
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

  const archiver = (events: ArchiverEvent[], intervalMs = 60_000) =>
    new Archiver({
      store,
      ws: f.ws,
      intervalMs,
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

  it("does not look for merges while busy, and merges the large pieces at the first idle cycle", async () => {
    const events: ArchiverEvent[] = [];
    const busy = archiver(events, 50);
    await busy.step(); // generation and snapshot
    for (let i = 0; i < 8; i++) {
      await appendDecisions(f.ws, RUN, PER, i * PER);
      await busy.step();
    }
    const piece = (await walSegmentsOf(store, RUN))[0]!.size;
    assert.ok(piece * 64 >= TARGET, `a piece of ${piece} bytes is large against ${TARGET}`);
    // The loop's first cycle ships one more large piece, 9 since the archiver started: a look is
    // due, but the writer is busy. Its second cycle ships nothing: it looks then, and merges.
    await appendDecisions(f.ws, RUN, PER, 8 * PER);
    const calls: string[] = [];
    const list = store.list.bind(store);
    store.list = (prefix) => (calls.push("list"), list(prefix));
    const step = busy.step.bind(busy);
    busy.step = () => (calls.push("cycle"), step());
    try {
      await firstLoopCompaction(busy);
    } finally {
      store.list = list;
    }
    assert.deepEqual(calls.slice(0, 3), ["cycle", "cycle", "list"], JSON.stringify(calls));
    const after = await entriesPerSegment();
    assert.ok(after.length < 9 && after.some((n) => n > PER), JSON.stringify(after));
    assert.equal(
      after.reduce((a, b) => a + b, 0),
      9 * PER,
      "the merged segments tile the WAL, no entry twice",
    );
    assert.ok(
      events.some((e) => e.event === "compacted"),
      JSON.stringify(events),
    );
  });
});
