/**
 * SIGKILL of a running `dr archive-compact` (a real child process) at seeded moments: after every
 * kill the archive still passes `archive-list --check` and restores every point to the same bytes
 * as before the compaction began; the next compaction finishes the job. The moment is the n-th
 * change of the store's listing (n seeded), or a seeded delay after the start.
 * Seed: $ARCHIVE_COMPACT_KILL_SEED, printed on failure.
 */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { entryTimeMs } from "../../src/wal/entry.js";
import { folderChanges, scratchDir, spawnCli, withSeed } from "../helpers.js";
import {
  archiveFixture,
  checkedProblems,
  restored,
  type ArchiveFixture,
} from "./support/archive-workspace.js";
import { copyStore, restoredStreams, writeHistory } from "./support/archive-history.js";

const RUN = "run-compact-kill";
const ROUNDS = 6;

const keys = async (dir: string): Promise<Set<string>> =>
  new Set((await readdir(dir)).filter((n) => !n.startsWith(".")));

describe("dr archive-compact killed with SIGKILL at seeded moments", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let pristine: string;
  let points: string[][];
  const expected: Map<string, string>[] = [];

  /**
   * The point restored by `dr archive-restore` (`inProcess`: by what it runs, in this process: the
   * rounds after each kill; the pristine points and those after the rerun go through the CLI).
   */
  async function restore(store: string, point: string[], name: string, inProcess = false) {
    const sdd = path.join(scratch.dir, "restores", name, ".sdd");
    const r = await restored(f, store, point, sdd, inProcess ? undefined : "archive-");
    assert.equal(r.code, 0, `${name} ${point.join(" ")}: ${r.stderr}`);
    return restoredStreams(sdd);
  }

  before(async () => {
    scratch = await scratchDir("bernstein-archive-compact-kill-");
    f = await archiveFixture(path.join(scratch.dir, "ws"));
    pristine = path.join(scratch.dir, "pristine");
    const steps = [{ decisions: 3 }, ...Array.from({ length: 20 }, () => ({ decisions: 2 }))];
    await writeHistory(f, pristine, RUN, steps, 0, "runs/run-compact-kill.jsonl");
    const entries = (await readFile(f.ws.walFile(RUN), "utf8")).trimEnd().split("\n");
    const at = (seq: number) => [
      "--at",
      new Date(entryTimeMs((JSON.parse(entries[seq]!) as { timestamp: number }).timestamp)).toISOString(),
    ];
    points = [["--at-seq", `${RUN}:6`], at(19), ["--at-seq", `${RUN}:33`], ["--latest"]];
    for (const [i, p] of points.entries()) expected.push(await restore(pristine, p, `pristine-${i}`));
  });
  after(async () => scratch.cleanup());

  it(`${ROUNDS} rounds: every point restorable as before after each kill, and after the rerun`, async () => {
    await withSeed("ARCHIVE_COMPACT_KILL_SEED", async (rand) => {
      const before = await keys(pristine);
      let midway = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const store = path.join(scratch.dir, `round-${round}`);
        await copyStore(pristine, store);
        const { child, done } = spawnCli(
          ["--sdd", f.sdd, "dr", "archive-compact", "--from", store, "--target-size", "2KiB"],
          { env: f.env, cwd: scratch.dir },
        );
        let exited = false;
        void done.then(() => (exited = true));
        if (rand() < 0.75) {
          // The n-th change of the listing: a merged segment stored, a small one deleted.
          const n = 1 + Math.floor(rand() * 30);
          const changes = folderChanges(store);
          try {
            for (;;) {
              const now = await keys(store);
              let changed = 0;
              for (const k of now) if (!before.has(k)) changed++;
              for (const k of before) if (!now.has(k)) changed++;
              if (changed >= n || exited) break;
              await changes.next();
            }
          } finally {
            changes.close();
          }
        } else {
          await new Promise((r) => setTimeout(r, Math.floor(rand() * 1500)));
        }
        child.kill("SIGKILL");
        const r = await done;
        const now = await keys(store);
        const touched = [...now].some((k) => !before.has(k)) || [...before].some((k) => !now.has(k));
        if (r.signal === "SIGKILL" && touched) midway++;
        else assert.ok(r.signal === "SIGKILL" || r.code === 0, `round ${round}: ${r.stderr}`);
        // What `dr archive-list --check` runs (it exits 0 with no problem), in this process.
        assert.deepEqual(await checkedProblems(f, store), [], `round ${round}`);
        const pick = [Math.floor(rand() * points.length), Math.floor(rand() * points.length)];
        for (const i of new Set(pick))
          assert.deepEqual(
            await restore(store, points[i]!, `round-${round}-${i}`, true),
            expected[i],
            `round ${round}: ${points[i]!.join(" ")} after the kill`,
          );
      }
      assert.ok(midway > 0, "no kill landed in the middle of a compaction");
      const last = path.join(scratch.dir, `round-${ROUNDS - 1}`);
      const rerun = await f.cli(["--json", "dr", "archive-compact", "--from", last, "--target-size", "2KiB"]);
      assert.equal(rerun.code, 0, rerun.stderr);
      for (const [i, p] of points.entries())
        assert.deepEqual(
          await restore(last, p, `rerun-${i}`),
          expected[i],
          `after the rerun: ${p.join(" ")}`,
        );
    });
  });
});
