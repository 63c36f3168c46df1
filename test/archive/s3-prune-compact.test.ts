/**
 * Compaction and retention of a WAL archive in the S3-compatible server: the merged segments'
 * indexes live in object metadata like any segment's, and a point restores the same bytes after
 * `dr archive-compact` and `dr prune --from s3://…`; a pruned instant is refused with exit 2.
 * An archive encrypted to age recipients in the same server restores with the identity only.
 * A running `dr archive` to s3:// compacts its generation in the background: fewer objects,
 * points inside the merged ranges restore and verify.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { listArchive } from "../../src/archive/catalog.js";
import { restoreToPoint } from "../../src/archive/restore-point.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { waitFor, withSeed } from "../helpers.js";
import type { S3Harness } from "../storage/support/s3-harness.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";
import {
  appendDecisions,
  archiveFixture,
  sha256File,
  type ArchiveFixture,
} from "./support/archive-workspace.js";
import { restoredStreams, writeHistory } from "./support/archive-history.js";
import {
  feedBursts,
  killLeftArchivers,
  pointsInsideMerges,
  restoresAt,
  spawnArchiver,
  walSegmentsOf,
} from "./support/archive-bursts.js";

const BUCKET = "wal-archive-retention";
const RUN = "run-s3-retention";

describe("dr archive-compact and dr prune on s3://", () => {
  let s: S3ArchiveSetup;
  let h: S3Harness;
  let f: ArchiveFixture;
  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-archive-s3-retention-");
    ({ h, f } = s);
  });
  after(async () => {
    killLeftArchivers();
    await s.close();
  });

  it("a point restores the same bytes after compaction and a prune; a pruned instant exits 2", async () => {
    const url = `s3://${BUCKET}/site/`;
    const remote = ["--endpoint", h.endpoint, "--retries", "0"];
    const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
    const twoDecisions = Array.from({ length: 5 }, () => ({ decisions: 2 }));
    await writeHistory(f, store, RUN, [
      { decisions: 3 },
      ...twoDecisions,
      { snapshot: true },
      ...twoDecisions,
    ]);
    const restore = async (point: string[], name: string) => {
      const sdd = path.join(s.dir, name, ".sdd");
      const r = await f.cli(["--json", "dr", "archive-restore", "--from", url, ...point, ...remote], sdd);
      return {
        code: r.code,
        stderr: r.stderr,
        streams: r.code === 0 ? await restoredStreams(sdd) : undefined,
      };
    };
    const kept = ["--at-seq", `${RUN}:18`];
    const before = await restore(kept, "before");
    assert.equal(before.code, 0, before.stderr);
    // The same point after compaction and after the prune: restored by what dr archive-restore
    // runs, in this process (the CLI's own run is the one above, and the refused one below).
    const restoreKept = async (name: string) => {
      const sdd = path.join(s.dir, name, ".sdd");
      const r = await restoreToPoint(store, { kind: "seq", run: RUN, seq: 18 }, sdd, {
        source: url,
        auditKeyPath: path.join(s.dir, name, "audit.key"),
      });
      assert.equal(r.wal[RUN]?.seq, 18, name);
      return restoredStreams(sdd);
    };

    const c = await f.cli([
      "--json",
      "dr",
      "archive-compact",
      "--from",
      url,
      "--target-size",
      "2KiB",
      ...remote,
    ]);
    assert.equal(c.code, 0, c.stderr);
    assert.ok(JSON.parse(c.stdout).merged.length >= 2, c.stdout);
    assert.deepEqual(await restoreKept("compacted"), before.streams);

    const p = await f.cli(["--json", "dr", "prune", "--from", url, "--keep-last", "1", ...remote]);
    assert.equal(p.code, 0, p.stderr);
    assert.equal(JSON.parse(p.stdout).kind, "wal-archive");
    const [gen] = (await listArchive(store)).generations;
    assert.deepEqual(
      gen!.snapshots.map((s) => s.number),
      [1],
    );
    assert.deepEqual(await restoreKept("pruned"), before.streams);
    const gone = await restore(["--at-seq", `${RUN}:5`], "gone");
    assert.equal(gone.code, 2, gone.stderr);
    assert.match(gone.stderr, /before the archive's window/);
    const check = await f.cli(["--json", "dr", "archive-list", "--from", url, "--check", ...remote]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });

  it("encrypted to an age recipient on s3://: shipped, checked and restored with the identity only", async () => {
    const g = await archiveFixture(path.join(s.dir, "age"), h.env);
    const url = `s3://${BUCKET}/age/`;
    const remote = ["--endpoint", h.endpoint, "--retries", "0"];
    const identity = path.join(g.dir, "id.txt");
    const made = await g.cli(["key", "generate", "-o", identity]);
    assert.equal(made.code, 0, made.stderr);
    const once = ["dr", "archive", "--to", url, "--once", "--recipient", made.stdout.trim(), ...remote];
    await appendDecisions(g.ws, RUN, 4);
    assert.equal((await g.cli(once)).code, 0);
    await appendDecisions(g.ws, RUN, 6, 4);
    const shipped = await g.cli(["--json", ...once]);
    assert.equal(shipped.code, 0, shipped.stderr);
    assert.ok(JSON.parse(shipped.stdout).segments_total >= 1, shipped.stdout);

    const target = path.join(g.dir, "restored", ".sdd");
    const keyless = await g.cli(["dr", "restore", "--from", url, "--latest", ...remote], target);
    assert.equal(keyless.code, 2, keyless.stderr);
    assert.match(keyless.stderr, /--identity-file/);
    const withKey = ["--from", url, "--latest", "--identity-file", identity, ...remote];
    const restored = await g.cli(["--json", "dr", "restore", ...withKey], target);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(JSON.parse(restored.stdout).wal[RUN].seq, 9);
    assert.equal(
      await sha256File(path.join(target, "runtime/wal", `${RUN}.wal.jsonl`)),
      await sha256File(g.ws.walFile(RUN)),
    );
    const check = await g.cli([
      "dr",
      "list",
      "--from",
      url,
      "--check",
      "--identity-file",
      identity,
      ...remote,
    ]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });

  it("a running dr archive to s3:// compacts in the background: fewer objects, points inside merges restore", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      const g = await archiveFixture(path.join(s.dir, "background"), h.env);
      const url = `s3://${BUCKET}/background/`;
      const remote = ["--endpoint", h.endpoint, "--retries", "0"];
      // The test watches the bucket while the archiver deletes merged pieces; s3rver can answer a
      // listing that races a delete with a 500, which a client retries.
      const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 3 });
      const a = spawnArchiver(g, url, ["--compact-target-size", "4KiB", ...remote]);
      const made = await feedBursts(g, store, RUN, a, { bursts: 30, made: 0, rand });
      // Compaction runs behind the bursts; on a loaded machine the first merge can land while most
      // bursts are still one object each, so wait for the count the test asserts, not for one merge.
      const compacted = async () => {
        const segments = await walSegmentsOf(store, RUN);
        return segments.length < 15 && segments.some((s) => s.lastSeq! - s.firstSeq! >= 5);
      };
      await waitFor("fewer than 15 WAL objects in the bucket, one of them merged", compacted, {
        exited: a.done,
      });
      const r = await a.stop();
      assert.match(r.stdout, /compacted/, r.stderr);
      assert.ok((await walSegmentsOf(store, RUN)).length < 15, "the bucket still holds one object per burst");
      const check = await g.cli(["--json", "dr", "list", "--from", url, "--check", ...remote]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      for (const seq of await pointsInsideMerges(store, RUN, 2))
        await restoresAt(g, url, RUN, seq, remote, "in-process");
      await restoresAt(g, url, RUN, made - 1, remote);
    });
  });
});
