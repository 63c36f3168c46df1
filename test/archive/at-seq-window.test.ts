/**
 * `dr restore --from ARCHIVE --at-seq RUN:SEQ` of an entry the base snapshot holds is refused
 * (exit 2, one line) naming the earliest seq that restores: a snapshot holds every file as it was
 * at its completion, so no restore goes back to an entry inside it. One that restores prints an
 * instant inside the window, and `--at` of that instant gives the same streams back; an entry
 * after the snapshot's position but made before it completed (a line begun before and finished
 * after) restores too, every other file as of the window's start, and says so.
 */
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { WalWriter } from "../../src/wal/writer.js";
import { scratchDir } from "../helpers.js";
import { copyStore, restoredStreams } from "./support/archive-history.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-at-seq-window";

describe("dr restore --at-seq of an entry the base snapshot holds", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: string;
  let restores = 0;

  before(async () => {
    scratch = await scratchDir("bernstein-at-seq-window-");
    f = await archiveFixture(scratch.dir);
    store = path.join(scratch.dir, "store");
    // Seq 0-2 in the base snapshot, then 3-5 in segments, 10 ms apart.
    await appendDecisions(f.ws, RUN, 3);
    const first = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(first.code, 0, first.stderr);
    const base = Date.now() + 10;
    let i = 0;
    const w = await WalWriter.open(f.ws, RUN, { clock: () => (base + 10 * i++) / 1000 });
    try {
      for (let n = 0; n < 3; n++)
        await w.append({ decision_type: "task_claimed", inputs: { task_id: `T-w${n}` }, committed: true });
    } finally {
      await w.close();
    }
    const second = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(second.code, 0, second.stderr);
  });
  after(async () => scratch.cleanup());

  const restore = async (args: string[], from = store) => {
    const target = path.join(scratch.dir, "restores", String(restores++), ".sdd");
    const r = await f.cli(["--json", "dr", "restore", "--from", from, ...args], target);
    return { r, target };
  };

  it("an entry the base snapshot holds is refused (exit 2, one line) naming the earliest seq that restores", async () => {
    for (const seq of [2, 1]) {
      const { r, target } = await restore(["--at-seq", `${RUN}:${seq}`]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^bernstein: --at-seq ${RUN}:${seq} is before the archive's window \\(g\\S+: \\S+ \\.\\. \\S+\\): the entry is in the base snapshot, ` +
            `which holds every file as it was when it completed, not as it was right after the entry; the earliest seq of ${RUN} that can be restored is 3 \\(--at-seq ${RUN}:3\\)$`,
          "m",
        ),
      );
      assert.equal(JSON.parse(r.stdout).exit_code, 2);
      assert.deepEqual(await readdir(path.dirname(path.dirname(target))).catch(() => []), []);
    }
  });

  it("the earliest seq restores, at an instant in the window; --at of that instant gives the same streams", async () => {
    const bySeq = await restore(["--at-seq", `${RUN}:3`]);
    assert.equal(bySeq.r.code, 0, bySeq.r.stderr);
    const doc = JSON.parse(bySeq.r.stdout);
    assert.equal(doc.wal[RUN].seq, 3);
    const start = (await f.cli(["dr", "list", "--from", store])).stdout.match(/^g\S+ {2}(\S+) \.\. /m)![1]!;
    assert.ok(Date.parse(doc.at) >= Date.parse(start), `${doc.at} is before the window's start ${start}`);
    const byTime = await restore(["--at", doc.at]);
    assert.equal(byTime.r.code, 0, byTime.r.stderr);
    assert.equal(JSON.parse(byTime.r.stdout).at, doc.at);
    assert.deepEqual(await restoredStreams(byTime.target), await restoredStreams(bySeq.target));
  });

  it("an entry after the snapshot's position made before it completed restores: its WAL cut right after it, the rest as of the window's start, and a warning says so", async () => {
    const late = path.join(scratch.dir, "store-late");
    await copyStore(store, late);
    const index = (await readdir(late)).find((n) => n.endsWith(".snap-000000.idx.json"))!;
    const wal = (await readFile(f.ws.walFile(RUN), "utf8")).trimEnd().split("\n");
    const timeOf = (seq: number) => Math.floor(JSON.parse(wal[seq]!).timestamp * 1000);
    // As if seq 3 had been made while the snapshot was still being stored.
    const idx = JSON.parse(await readFile(path.join(late, index), "utf8"));
    idx.completed_at = timeOf(4);
    await writeFile(path.join(late, index), JSON.stringify(idx));
    const { r } = await restore(["--at-seq", `${RUN}:3`], late);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.wal[RUN].seq, 3);
    const start = new Date(timeOf(4)).toISOString();
    assert.equal(doc.at, start, "the point printed is in the window");
    assert.ok(
      (doc.warnings as string[]).some(
        (w) =>
          w ===
          `${RUN}:3 was made at ${new Date(timeOf(3)).toISOString()}, before its snapshot completed: ` +
            `its WAL is cut right after it, every other file is as of the window's start, ${start}`,
      ),
      r.stdout,
    );
    const four = await restore(["--at-seq", `${RUN}:4`], late);
    assert.equal(four.r.code, 0, four.r.stderr);
    assert.equal(JSON.parse(four.r.stdout).at, start);
  });
});
