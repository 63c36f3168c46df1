/**
 * `dr prune --from URL` on a WAL archive (real folder store, real CLI processes): the keep rules
 * pick snapshots; every kept point stays restorable exactly as before, a pruned instant is
 * refused with exit 2 naming the window, --dry-run deletes nothing, old generations go whole.
 */
import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  SNAPSHOT_FORMAT,
  listArchive,
  type GenerationListing,
  type SnapshotIndex,
  type StoredSegment,
} from "../../src/archive/catalog.js";
import { planArchivePrune } from "../../src/archive/prune.js";
import { LocalStore } from "../../src/storage/local-store.js";
import { scratchDir } from "../helpers.js";
import { archiveFixture, storeObjects, type ArchiveFixture } from "./support/archive-workspace.js";
import { copyStore, restoredStreams, writeHistory } from "./support/archive-history.js";

const RUN = "run-prune";

describe("dr prune on a WAL archive", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let pristine: string;
  let made = 0;

  /** Restores `point` (CLI flags) from `store` into a fresh folder; its streams, or the failure. */
  async function restore(store: string, point: string[], name: string) {
    const sdd = path.join(scratch.dir, "restores", name, ".sdd");
    const r = await f.cli(["--json", "dr", "archive-restore", "--from", store, ...point], sdd);
    return { r, streams: r.code === 0 ? await restoredStreams(sdd) : undefined };
  }

  before(async () => {
    scratch = await scratchDir("bernstein-archive-prune-");
    f = await archiveFixture(path.join(scratch.dir, "ws"));
    pristine = path.join(scratch.dir, "pristine");
    // Snapshots 0..3, each followed by segments: s0 [seg seg seg] s1 [seg seg seg] s2 [seg seg seg] s3 [seg seg]
    // (the first step starts the generation, which takes snapshot 0)
    made = await writeHistory(f, pristine, RUN, [
      { decisions: 4 },
      ...[1, 2, 3].flatMap(() => [
        { decisions: 3 },
        { decisions: 3 },
        { decisions: 3 },
        { snapshot: true } as const,
      ]),
      { decisions: 3 },
      { decisions: 3 },
    ]);
  });
  after(async () => scratch.cleanup());

  it("--dry-run says what it would delete and deletes nothing", async () => {
    const store = path.join(scratch.dir, "dry");
    await copyStore(pristine, store);
    const before = await storeObjects(store);
    const r = await f.cli(["--json", "dr", "prune", "--from", store, "--keep-last", "2", "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.kind, "wal-archive");
    assert.equal(res.dry_run, true);
    assert.equal(res.deleted_objects, 0);
    assert.deepEqual(
      res.snapshots.map((s: { number: number; action: string }) => `${s.number}:${s.action}`),
      ["3:keep", "2:keep", "1:delete", "0:delete"],
    );
    assert.ok(res.generations[0].segments_deleted > 0, r.stdout);
    assert.deepEqual(await storeObjects(store), before);
    const human = await f.cli(["dr", "prune", "--from", store, "--keep-last", "2", "--dry-run"]);
    assert.match(human.stdout, /would delete gen-.*\.snap-000000\.tar\.gz/);
    assert.deepEqual(await storeObjects(store), before);
  });

  it("keeps every kept point restorable as before; a pruned instant is refused naming the window", async () => {
    const store = path.join(scratch.dir, "pruned");
    await copyStore(pristine, store);
    const [gen] = (await listArchive(new LocalStore(store))).generations;
    const snaps = gen!.snapshots;
    const oldestKept = new Date(snaps[2]!.completed_at).toISOString();
    const walSeq = (n: number) => snaps[n]!.streams[`runtime/wal/${RUN}.wal.jsonl`]!.seq!;
    // Points a kept window holds: its start, inside it, across the next snapshot, the newest.
    const points = [
      ["--at", oldestKept],
      ["--at-seq", `${RUN}:${walSeq(2) + 4}`],
      ["--at-seq", `${RUN}:${walSeq(3) + 1}`],
      ["--latest"],
    ];
    const expected = [];
    for (const [i, p] of points.entries()) {
      const { r, streams } = await restore(store, p, `before-${i}`);
      assert.equal(r.code, 0, `${p.join(" ")}: ${r.stderr}`);
      expected.push(streams);
    }
    const pruned = await f.cli(["--json", "dr", "prune", "--from", store, "--keep-last", "2"]);
    assert.equal(pruned.code, 0, pruned.stderr);
    const res = JSON.parse(pruned.stdout);
    assert.ok(res.deleted_objects >= 4 + 6, pruned.stdout);
    const left = [...(await storeObjects(store)).keys()];
    assert.ok(!left.some((k) => /snap-00000[01]/.test(k)), left.join("\n"));
    for (const [i, p] of points.entries()) {
      const { r, streams } = await restore(store, p, `after-${i}`);
      assert.equal(r.code, 0, `${p.join(" ")}: ${r.stderr}`);
      assert.deepEqual(streams, expected[i], `${p.join(" ")} restores other bytes after the prune`);
    }
    const inPruned = new Date(snaps[1]!.completed_at).toISOString();
    for (const p of [
      ["--at", inPruned],
      ["--at-seq", `${RUN}:${walSeq(1)}`],
    ]) {
      const { r } = await restore(store, p, `pruned-${p[0]}`);
      assert.equal(r.code, 2, `${p.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.ok(r.stderr.includes(`${gen!.generation}: ${oldestKept} ..`), r.stderr);
    }
    const check = await f.cli(["--json", "dr", "archive-list", "--from", store, "--check"]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.deepEqual(JSON.parse(check.stdout).generations[0].gaps, []);
    assert.equal(JSON.parse(check.stdout).generations[0].earliest, oldestKept);
    // The windows after the prune as data, as dr list --from gives them.
    assert.deepEqual(
      res.windows_after,
      JSON.parse(check.stdout).generations.map(
        (g: { generation: string; earliest: string; latest: string; segments: number; gaps: unknown[] }) => ({
          generation: g.generation,
          earliest: g.earliest,
          latest: g.latest,
          segments: g.segments,
          gaps: g.gaps,
        }),
      ),
    );
    const again = await f.cli(["dr", "prune", "--from", store, "--keep-last", "2"]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(again.stdout.includes(`window now ${gen!.generation}: ${oldestKept} .. `), again.stdout);
    assert.equal(made > 0, true);
  });

  it("removes an old generation of a workspace whole once none of its snapshots is kept; another workspace's history keeps its own", async () => {
    const store = path.join(scratch.dir, "histories");
    const mine = await archiveFixture(path.join(scratch.dir, "mine"));
    await writeHistory(mine, store, RUN, [{ decisions: 3 }, { decisions: 2 }]);
    // Restored in place to an earlier point and archived again: a new generation of the same history.
    // Seq 3, the first entry after the base snapshot (an entry it holds is before the window).
    const back = await mine.cli(["dr", "archive-restore", "--from", store, "--at-seq", `${RUN}:3`]);
    assert.equal(back.code, 0, back.stderr);
    await writeHistory(mine, store, RUN, [{ decisions: 2 }], 5);
    // Another workspace archiving to the same location: a history of its own.
    const other = await archiveFixture(path.join(scratch.dir, "other"));
    await writeHistory(other, store, RUN, [{ decisions: 3 }]);
    const gens = (await listArchive(new LocalStore(store))).generations.map((g) => g.generation);
    assert.equal(gens.length, 3);

    const r = await f.cli(["--json", "dr", "prune", "--from", store, "--keep-last", "1"]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.deepEqual(
      res.generations.map((g: { action: string }) => g.action),
      ["delete", "keep", "keep"],
    );
    const host = os.hostname();
    assert.deepEqual(
      res.snapshots.map((s: { generation: string; history: string; action: string }) => [
        s.generation,
        s.history,
        s.action,
      ]),
      [
        [gens[1], `${host}:${mine.sdd}`, "keep"],
        [gens[0], `${host}:${mine.sdd}`, "delete"],
        [gens[2], `${host}:${other.sdd}`, "keep"],
      ],
    );
    const left = [...(await storeObjects(store)).keys()];
    assert.deepEqual(
      left.filter((k) => k.includes(gens[0]!)),
      [],
      left.join("\n"),
    );
    const latest = await restore(store, ["--latest"], "histories-latest");
    assert.equal(latest.r.code, 0, latest.r.stderr);
    assert.equal(JSON.parse(latest.r.stdout).generation, gens[2]);
    const mineLatest = await restore(store, ["--latest", "--generation", gens[1]!], "histories-mine");
    assert.equal(mineLatest.r.code, 0, mineLatest.r.stderr);

    const human = await f.cli(["dr", "prune", "--from", store, "--keep-last", "1", "--dry-run"]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(`^history of ${mine.sdd} on ${host}:\n  keep   gen-${gens[1]}\\.snap-`, "m"),
    );
    assert.match(
      human.stdout,
      new RegExp(`^history of ${other.sdd} on ${host}:\n  keep   gen-${gens[2]}\\.snap-`, "m"),
    );
  });

  it("one location flag: --at and --from name it; neither or both is a usage error", async () => {
    const both = await f.cli(["dr", "prune", "--from", pristine, "--at", pristine, "--keep-last", "1"]);
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /give the location once/);
    const none = await f.cli(["dr", "prune", "--keep-last", "1"]);
    assert.equal(none.code, 2, none.stderr);
    const bad = await f.cli(["dr", "prune", "--from", pristine, "--keep-within", "7 days"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--keep-within/);
  });
});

describe("the WAL archive prune plan", () => {
  const DAY = 86_400_000;
  const T0 = Date.UTC(2026, 11, 1);
  const WAL = "runtime/wal/r.wal.jsonl";
  const snap = (generation: string, number: number, day: number, length: number): SnapshotIndex => ({
    format: SNAPSHOT_FORMAT,
    generation,
    number,
    key: `gen-${generation}.snap-${String(number).padStart(6, "0")}.tar.gz`,
    sha256: "",
    size_bytes: 1,
    started_at: T0 + day * DAY,
    completed_at: T0 + day * DAY,
    streams: { [WAL]: { length, tail_sha256: "" } },
  });
  const seg = (generation: string, from: number, to: number): StoredSegment => ({
    generation,
    stream: WAL,
    from,
    to,
    key: `gen-${generation}.seg.x.${from}-${to}`,
    size: to - from,
  });
  const gen = (
    generation: string,
    snapshots: SnapshotIndex[],
    segments: StoredSegment[],
  ): GenerationListing => ({
    generation,
    snapshots,
    unindexed: [],
    damaged: [],
    refused: [],
    segments: new Map(segments.length ? [[WAL, segments]] : []),
  });

  it("--keep-within keeps the snapshot its period starts from; segments before the oldest kept one go, oldest first", () => {
    const g = "g1";
    const listing = {
      foreign: [],
      generations: [
        gen(
          g,
          [snap(g, 0, 0, 0), snap(g, 1, 1, 100), snap(g, 2, 2, 200), snap(g, 3, 3, 300)],
          [seg(g, 0, 50), seg(g, 50, 100), seg(g, 100, 150), seg(g, 150, 250), seg(g, 250, 300)],
        ),
      ],
    };
    const plan = planArchivePrune(listing, { within: 1.5 * DAY });
    assert.deepEqual(
      plan.snapshots.map((s) => `${s.number}:${s.action}`),
      ["3:keep", "2:keep", "1:keep", "0:delete"],
    );
    assert.match(plan.snapshots[2]!.reasons.join(), /starts the window/);
    // Snapshot 0's index before its archive, then the segments only snapshot 0 needed, oldest first.
    assert.deepEqual(plan.generations[0]!.deletes, [
      `gen-${g}.snap-000000.idx.json`,
      `gen-${g}.snap-000000.tar.gz`,
      `gen-${g}.seg.x.0-50`,
      `gen-${g}.seg.x.50-100`,
    ]);
  });

  it("an old generation with nothing kept goes whole, record last; a newest one still without a snapshot stays", () => {
    const record = { generation: "g1" } as GenerationListing["record"];
    const old = { ...gen("g1", [snap("g1", 0, 0, 0)], [seg("g1", 0, 10)]), record };
    const mid = gen("g2", [snap("g2", 0, 1, 0)], []);
    const starting = gen("g3", [], [seg("g3", 0, 10)]);
    const plan = planArchivePrune({ foreign: [], generations: [old, mid, starting] }, { last: 1 });
    assert.equal(plan.generations[0]!.action, "delete");
    assert.equal(plan.generations[0]!.deletes.at(-1), "gen-g1.json");
    assert.equal(plan.generations[1]!.action, "keep");
    assert.deepEqual(plan.generations[2]!.deletes, []);
  });

  it("each history apart: another workspace's newer snapshots do not count; each one's newest generation may be starting", () => {
    const of = (generation: string, workspace: string) =>
      ({ generation, host: "h", workspace }) as GenerationListing["record"];
    const a0 = { ...gen("a0", [snap("a0", 0, 0, 0)], [seg("a0", 0, 10)]), record: of("a0", "/a") };
    const a1 = { ...gen("a1", [snap("a1", 0, 1, 0)], []), record: of("a1", "/a") };
    const aStarting = { ...gen("a2", [], [seg("a2", 0, 10)]), record: of("a2", "/a") };
    const b0 = { ...gen("b0", [snap("b0", 0, 3, 0)], []), record: of("b0", "/b") };
    const plan = planArchivePrune({ foreign: [], generations: [a0, a1, aStarting, b0] }, { last: 1 });
    assert.deepEqual(
      plan.generations.map((g) => `${g.generation}:${g.action}:${g.deletes.length}`),
      ["a0:delete:4", "a1:keep:0", "a2:keep:0", "b0:keep:0"],
    );
    assert.deepEqual(
      plan.snapshots.map((s) => `${s.history}:${s.generation}:${s.action}`),
      ["h:/a:a1:keep", "h:/a:a0:delete", "h:/b:b0:keep"],
    );
  });
});
