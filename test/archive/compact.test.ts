/**
 * `dr archive-compact`: runs of small segments become merged ones; every point restores the same
 * bytes before and after, `archive-list --check` passes, and a listing that holds a merged
 * segment beside the small ones it replaced (an interrupted compaction) restores each byte once.
 */
import assert from "node:assert/strict";
import { cp, readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { compactArchive, mergeGroups } from "../../src/archive/compact.js";
import { listArchive, type StoredSegment } from "../../src/archive/catalog.js";
import { storedEnds } from "../../src/archive/generation.js";
import { LocalStore } from "../../src/storage/local-store.js";
import { entryTimeMs } from "../../src/wal/entry.js";
import { runMain, scratchDir } from "../helpers.js";
import {
  archiveFixture,
  rewriteSegment,
  segmentText,
  storeObjects,
  walSegments,
  type ArchiveFixture,
} from "./support/archive-workspace.js";
import { copyStore, restoredStreams, writeHistory } from "./support/archive-history.js";

const RUN = "run-compact";
const LOG = "runs/run-compact.jsonl";

describe("dr archive-compact", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let pristine: string;
  let points: string[][];
  const expected: (Map<string, string> | undefined)[] = [];

  /**
   * The CLI in a process (`real`), else its main() in this one (runMain): the pristine store's
   * points are restored by real runs, each later store's compared with them in-process.
   */
  const cli = (args: string[], real: boolean, sdd = f.sdd) =>
    real ? f.cli(args, sdd) : runMain(["--sdd", sdd, ...args], { env: f.env, cwd: f.dir });

  async function restore(store: string, point: string[], name: string, real = false) {
    const sdd = path.join(scratch.dir, "restores", name, ".sdd");
    const r = await cli(["--json", "dr", "archive-restore", "--from", store, ...point], real, sdd);
    assert.equal(r.code, 0, `${point.join(" ")}: ${r.stderr}`);
    return restoredStreams(sdd);
  }

  async function restoresAsBefore(store: string, label: string, real = false) {
    for (const [i, p] of points.entries())
      assert.deepEqual(await restore(store, p, `${label}-${i}`), expected[i], `${label}: ${p.join(" ")}`);
    const check = await cli(["--json", "dr", "archive-list", "--from", store, "--check"], real);
    assert.equal(check.code, 0, `${label}: ${check.stdout}${check.stderr}`);
    assert.deepEqual(JSON.parse(check.stdout).generations[0].gaps, []);
  }

  before(async () => {
    scratch = await scratchDir("bernstein-archive-compact-");
    f = await archiveFixture(path.join(scratch.dir, "ws"));
    pristine = path.join(scratch.dir, "pristine");
    const steps = [{ decisions: 3 }, ...Array.from({ length: 16 }, () => ({ decisions: 2 }))];
    await writeHistory(f, pristine, RUN, steps, 0, LOG);
    const entries = (await readFile(f.ws.walFile(RUN), "utf8"))
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { seq: number; timestamp: number });
    const at = (seq: number) => ["--at", new Date(entryTimeMs(entries[seq]!.timestamp)).toISOString()];
    points = [["--at-seq", `${RUN}:10`], ["--at-seq", `${RUN}:22`], at(16), ["--latest"]];
    for (const [i, p] of points.entries()) expected.push(await restore(pristine, p, `pristine-${i}`, true));
  });
  after(async () => scratch.cleanup());

  it("merges runs of small segments; every point restores the same bytes as before", async () => {
    const store = path.join(scratch.dir, "compacted");
    await copyStore(pristine, store);
    const before = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(before.length, 16);
    const r = await f.cli(["--json", "dr", "archive-compact", "--from", store, "--target-size", "2KiB"]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.ok(res.merged.length >= 4, r.stdout);
    assert.ok(res.segments_after < res.segments_before / 2, r.stdout);
    const after = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(
      after.length,
      res.merged.filter((m: { stream: string }) => m.stream === `runtime/wal/${RUN}.wal.jsonl`).length +
        before.filter((k) => !res.merged.some((m: { replaced: string[] }) => m.replaced.includes(k))).length,
    );
    // A merged WAL segment names the whole seq range it proves.
    assert.ok(
      after.some((k) => /\.s\d+-\d+$/.test(k) && !before.includes(k)),
      after.join("\n"),
    );
    await restoresAsBefore(store, "compacted", true);
    const again = await cli(
      ["--json", "dr", "archive-compact", "--from", store, "--target-size", "2KiB"],
      false,
    );
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).leftovers.length, 0);
  });

  it("a piece whose lines do not link on by their frames is checked entry by entry and named; nothing merged over it", async () => {
    const store = path.join(scratch.dir, "unlinked");
    await copyStore(pristine, store);
    const segs = walSegments((await storeObjects(store)).keys(), RUN);
    const middle = segs[4]!;
    const first = Number(/\.s(\d+)-\d+$/.exec(middle)![1]);
    // A seq changed in the piece's last line, its index made to match: only its lines tell.
    const bytes = await segmentText(store, middle);
    const lastStart = bytes.lastIndexOf("\n", bytes.length - 2) + 1;
    const seq = Number(/^\{"seq":(\d+),/.exec(bytes.slice(lastStart))![1]);
    assert.ok(seq > first);
    const changed =
      bytes.slice(0, lastStart) + bytes.slice(lastStart).replace(`{"seq":${seq},`, `{"seq":${seq + 1},`);
    assert.equal(changed.length, bytes.length);
    await rewriteSegment(store, middle, changed);
    const r = await f.cli(["--json", "dr", "archive-compact", "--from", store, "--target-size", "2KiB"]);
    assert.equal(r.code, 5, r.stdout + r.stderr);
    assert.ok(r.stderr.includes(middle), r.stderr);
    assert.ok((await storeObjects(store)).has(middle));
  });

  it("a merged segment beside the small ones it replaced: each byte applied once; the next run deletes them", async () => {
    const store = path.join(scratch.dir, "both");
    await copyStore(pristine, store);
    const r = await cli(["--json", "dr", "archive-compact", "--from", store, "--target-size", "2KiB"], false);
    assert.equal(r.code, 0, r.stderr);
    const replaced: string[] = JSON.parse(r.stdout).merged.flatMap((m: { replaced: string[] }) => m.replaced);
    // Put the small ones back, with their metadata: what a kill between put and delete leaves.
    for (const key of replaced) {
      await cp(path.join(pristine, key), path.join(store, key));
      await cp(path.join(pristine, `.${key}.meta.json`), path.join(store, `.${key}.meta.json`));
    }
    await restoresAsBefore(store, "both");
    const again = await cli(
      ["--json", "dr", "archive-compact", "--from", store, "--target-size", "2KiB"],
      false,
    );
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout).leftovers.sort(), [...replaced].sort());
    await restoresAsBefore(store, "cleaned");
  });

  it("another compaction deletes a piece between this one's HEAD and GET: the group is left to it, nothing fails", async () => {
    const dir = path.join(scratch.dir, "raced");
    await copyStore(pristine, dir);
    const opts = { targetBytes: 2048 };
    let raced: string | undefined;
    let armed = false;
    // The archiver's compaction, run to its end just after this one's first HEAD of a piece: it
    // merges the same groups and deletes their pieces before this one's GET.
    class RacedStore extends LocalStore {
      override async head(key: string) {
        const info = await super.head(key);
        if (armed && raced === undefined) {
          raced = key;
          const other = new LocalStore(dir);
          await compactArchive(other, await listArchive(other), opts);
        }
        return info;
      }
    }
    const store = new RacedStore(dir);
    const listing = await listArchive(store);
    armed = true;
    const res = await compactArchive(store, listing, opts);
    assert.ok(raced !== undefined, "no piece was read through its HEAD");
    assert.ok(!(await storeObjects(dir)).has(raced), `${raced}: the other compaction left it`);
    assert.deepEqual(res.merged, [], "every group was left to the other compaction");
    await restoresAsBefore(dir, "raced");
  });

  it("groups only consecutive small segments of a continuous seq range, up to the target", () => {
    const seg = (from: number, to: number, firstSeq?: number, lastSeq?: number): StoredSegment => ({
      generation: "g",
      stream: "s",
      from,
      to,
      key: `${from}-${to}`,
      size: to - from,
      ...(firstSeq !== undefined ? { firstSeq, lastSeq } : {}),
    });
    const keys = (groups: StoredSegment[][]) => groups.map((g) => g.map((s) => s.key));
    assert.deepEqual(
      keys(
        mergeGroups([seg(0, 10), seg(10, 20), seg(20, 30), seg(30, 100), seg(100, 110), seg(110, 115)], 25),
      ),
      [
        ["0-10", "10-20"],
        ["100-110", "110-115"],
      ],
    );
    // A hole or a seq jump ends a run.
    assert.deepEqual(keys(mergeGroups([seg(0, 10, 0, 1), seg(10, 20, 3, 4), seg(20, 30, 5, 6)], 100)), [
      ["10-20", "20-30"],
    ]);
    assert.deepEqual(keys(mergeGroups([seg(0, 10), seg(11, 20), seg(20, 25)], 100)), [["11-20", "20-25"]]);
    // Tiered: a short run that a piece of another tier follows can never grow, so it merges; the
    // short run at the end of the chain waits for more pieces.
    assert.deepEqual(
      keys(mergeGroups([seg(0, 1), seg(1, 2), seg(2, 3), seg(3, 13), seg(13, 23), seg(23, 33)], 1000, 8)),
      [["0-1", "1-2", "2-3"]],
    );
    assert.deepEqual(keys(mergeGroups([seg(0, 1), seg(1, 2), seg(2, 1002), seg(1002, 1003)], 1000, 8)), [
      ["0-1", "1-2"],
    ]);
  });
});

describe("an archiver resuming beside a compaction", () => {
  it("takes the stream's end from the merged segment when a listed small one is gone before its HEAD", async () => {
    const scratch = await scratchDir("bernstein-archive-resume-compacted-");
    try {
      const f = await archiveFixture(path.join(scratch.dir, "ws"));
      const dir = path.join(scratch.dir, "store");
      await writeHistory(f, dir, RUN, [{ decisions: 3 }, { decisions: 2 }, { decisions: 2 }]);
      const smalls = walSegments((await storeObjects(dir)).keys(), RUN);
      const r = await runMain(
        ["--sdd", f.sdd, "--json", "dr", "archive-compact", "--from", dir, "--target-size", "1MiB"],
        {
          env: f.env,
          cwd: f.dir,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      // A listing taken before the compaction deleted the small segments.
      class StaleListing extends LocalStore {
        override async list(prefix = "") {
          const now = await super.list(prefix);
          return [...now, ...smalls.map((key) => ({ key, size: 1, lastModified: new Date(), metadata: {} }))];
        }
      }
      const store = new StaleListing(dir);
      const ends = await storedEnds(store, (await listArchive(store)).generations[0]!);
      const wal = ends.get(`runtime/wal/${RUN}.wal.jsonl`)!;
      assert.equal(wal.seq, 6);
      assert.equal(wal.length, (await readFile(f.ws.walFile(RUN))).length);
    } finally {
      await scratch.cleanup();
    }
  });
});
