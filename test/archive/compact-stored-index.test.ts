/**
 * The running archiver's background compaction reads the pieces it stored itself without a HEAD
 * each (it keeps the index each was stored with), against the S3-compatible server: one HEAD per
 * merge (the merged segment read back before its pieces go), and the merged archive restores
 * every decision. A piece it did not store (an archiver restarted on the generation) is still
 * read through its index in the store.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Archiver, type ArchiverEvent } from "../../src/archive/archiver.js";
import { listArchive } from "../../src/archive/catalog.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { waitFor } from "../helpers.js";
import type { S3Harness } from "../storage/support/s3-harness.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";
import { appendDecisions, sha256File, type ArchiveFixture } from "./support/archive-workspace.js";

const BUCKET = "wal-archive-stored-index";
const RUN = "run-stored-index";
const TARGET = 8 * 1024 * 1024;

describe("background compaction of the segments the archiver stored", () => {
  let s: S3ArchiveSetup;
  let h: S3Harness;
  let f: ArchiveFixture;
  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-archive-stored-index-");
    ({ h, f } = s);
  });
  after(async () => {
    await s.close();
  });

  const archiverTo = async (url: string, events: ArchiverEvent[]) =>
    new Archiver({
      store: await openCatalogue(url, { endpoint: h.endpoint, retries: 0 }),
      ws: f.ws,
      intervalMs: 60_000,
      snapshotIntervalMs: 86_400_000,
      compactTargetBytes: TARGET,
      log: (e) => events.push(e),
    });

  /**
   * Eight cycles of `per` decisions each, then the loop that compacts once 8 segments are stored.
   * A merged segment of 8 x 3 decisions and pieces of 1 are in different tiers (compact.ts), so
   * the 8 new pieces are merged together.
   */
  const shipEightThenCompact = async (a: Archiver, events: ArchiverEvent[], from: number, per: number) => {
    for (let i = 0; i < 8; i++) {
      await appendDecisions(f.ws, RUN, per, from + i * per);
      await a.step();
    }
    a.start((err) => assert.fail(String(err)));
    try {
      await waitFor("a background compaction", () =>
        events.some((e) => e.event === "compacted" || e.event === "compact-error"),
      );
    } finally {
      await a.finish(); // a failed wait leaves no loop running
    }
    assert.ok(!events.some((e) => e.event === "compact-error"), JSON.stringify(events));
  };

  it("merges without a HEAD per piece, one HEAD per merge; a restarted archiver's pieces are read through their index", async () => {
    const url = `s3://${BUCKET}/site/`;
    const events: ArchiverEvent[] = [];
    const first = await archiverTo(url, events);
    await first.step(); // generation and snapshot
    h.resetCounts();
    await shipEightThenCompact(first, events, 0, 3);
    const merges = events.filter((e) => e.event === "compacted");
    assert.equal(merges.length, 1, JSON.stringify(events));
    assert.equal(h.counts.get("GetObject"), 8, "each piece downloaded once");
    assert.equal(h.counts.get("HeadObject"), 1, "only the merged segment read back");

    // Another archiver on the same generation: the pieces it merges were stored by the first.
    const events2: ArchiverEvent[] = [];
    const second = await archiverTo(url, events2);
    await second.step();
    h.resetCounts();
    await shipEightThenCompact(second, events2, 24, 1);
    const heads = h.counts.get("HeadObject") ?? 0;
    assert.ok(heads >= 1, "the merged segment read back");

    const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
    const listing = await listArchive(store);
    const wal = [...listing.generations[0]!.segments.values()].flat().filter((x) => x.firstSeq !== undefined);
    assert.ok(wal.length < 16, `compacted: ${wal.length} WAL segments`);
    const restored = path.join(s.dir, "restored", ".sdd");
    const r = await f.cli(["dr", "restore", "--from", url, "--latest", "--endpoint", h.endpoint], restored);
    assert.equal(r.code, 0, r.stderr);
    const walOf = (sdd: string) => path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`);
    assert.equal(
      await sha256File(walOf(restored)),
      await sha256File(walOf(f.sdd)),
      "every decision restored",
    );
  });
});
