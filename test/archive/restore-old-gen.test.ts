/**
 * A point restore's peak memory must not grow with the lines it replays. Garbage left in the old
 * generation makes it grow: V8 frees it only at a full GC, which comes later the more there is
 * (a double's text from String(), a key string looked up in an object, both interned there). This
 * counts it directly, in children whose heap is set so that no full GC runs during the restore:
 * the old generation may grow by a few bytes per line replayed (survivors of the young
 * generation), not by an object per line. Two restores of the same archive, to its middle and to
 * its end, each in a fresh process: the difference is what the lines cost.
 *
 * Two things keep the figure far from the bound whatever the load. The child reads the old space's
 * used size with an allocation observer on (see there): without one it moves a whole allocation
 * area, hundreds of KB, at a time. And the young generation is 16 MB from the start: a restore
 * then sees a few scavenges instead of dozens, so few of the young objects that I/O timing happens
 * to hold when one comes are promoted. Each point still takes the least of a few children.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { REPO_ROOT } from "../helpers.js";
import { appendDecisions, archivedFixture, type ArchivedFixture } from "./support/archive-workspace.js";

const CHILD = path.join(REPO_ROOT, "dist", "test", "archive", "support", "restore-old-gen-child.js");
const RUN = "run-many";
const BATCHES = 6;
const PER_BATCH = 5000;
/**
 * Old-generation bytes a replayed line may leave (each line allocates about 2 KB in the young one).
 * A restore leaves 0-14: survivors and compiled code, and in some children (whatever the load) one
 * more allocation area of the old space, about 10 a line over the lines compared. Each leak this
 * was written for leaves more on top of that: an interned key string a line about 28, a double's
 * text from String() about 44. The bound lies between the two.
 */
const BYTES_PER_LINE = 20;
const TRIES = 3;
/** Children per point at most: one in which a full GC ran measures nothing and is run again. */
const MAX_CHILDREN = 6;

let fx: ArchivedFixture;

before(async () => {
  fx = await archivedFixture("bernstein-restore-old-gen-");
  await fx.archive(); // the snapshot: an empty WAL
  for (let b = 0; b < BATCHES; b++) {
    await appendDecisions(fx.f.ws, RUN, PER_BATCH, b * PER_BATCH);
    await fx.archive();
  }
});
after(async () => fx.scratch.cleanup());

interface Measured {
  lines: number;
  segments: number;
  old_space_grown: number;
  full_gcs: number;
}

/** A fresh child (no string or cache left by another restore) restoring RUN up to `seq`. */
function runChild(seq: number | "latest"): Promise<Measured> {
  const flags = [
    "--min-semi-space-size=16",
    "--max-semi-space-size=16",
    "--initial-old-space-size=512",
    "--no-memory-reducer",
  ];
  const scratch = path.join(fx.scratch.dir, `out-${seq}`);
  const args = [fx.store, scratch, fx.f.env.BERNSTEIN_AUDIT_KEY_PATH!, RUN, String(seq)];
  const child = spawn(process.execPath, [...flags, CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`child exited ${code}: ${err}`));
      else resolve(JSON.parse(out));
    }),
  );
}

/**
 * The least growth over TRIES fresh children per point (alternating, so load falls on both). A
 * child in which a full GC ran freed some of what the restore left, so its figure is too low to
 * count (and would be the least): it is replaced by another, up to MAX_CHILDREN per point.
 */
async function leastGrowth(total: number): Promise<[Measured, Measured, string]> {
  const halves: Measured[] = [];
  const latests: Measured[] = [];
  const counted = (ms: Measured[]) => ms.filter((m) => m.full_gcs === 0);
  const shown = (ms: Measured[]) =>
    ms.map((m) => `${m.old_space_grown}${m.full_gcs ? ` (${m.full_gcs} full GC)` : ""}`).join(", ");
  while (
    (counted(halves).length < TRIES || counted(latests).length < TRIES) &&
    halves.length < MAX_CHILDREN
  ) {
    if (counted(halves).length < TRIES) halves.push(await runChild(total / 2 - 1));
    if (counted(latests).length < TRIES) latests.push(await runChild("latest"));
  }
  const seen = `half ${shown(halves)}; latest ${shown(latests)}`;
  const least = (ms: Measured[], point: string) => {
    const ok = counted(ms);
    assert.ok(
      ok.length > 0,
      `a full GC ran in each of ${ms.length} restores to ${point}: nothing measured (${seen})`,
    );
    return ok.reduce((a, b) => (b.old_space_grown < a.old_space_grown ? b : a));
  };
  return [least(halves, "the middle"), least(latests, "the end"), seen];
}

test("a point restore leaves no per-line garbage in the old generation", async () => {
  const total = BATCHES * PER_BATCH;
  const [half, latest, seen] = await leastGrowth(total);
  assert.deepEqual([half.lines, latest.lines], [total / 2, total]);
  assert.ok(latest.segments >= BATCHES, `restored from ${latest.segments} segments`);
  // The growth that comes with the lines (what a restore costs whatever its size cancels out).
  const perLine = (latest.old_space_grown - half.old_space_grown) / (latest.lines - half.lines);
  assert.ok(
    perLine <= BYTES_PER_LINE,
    `the old generation grew by ${half.old_space_grown} bytes restoring ${half.lines} lines and by ${latest.old_space_grown} restoring ${latest.lines} (least of ${TRIES} children each; all: ${seen}): ${perLine.toFixed(1)} bytes per line (at most ${BYTES_PER_LINE})`,
  );
});
