/**
 * The uncommitted index of a restored point is written from the intents the restore saw (the
 * snapshot's WAL copies and the segment lines it applied), not by reading every WAL again: its
 * rows must be exactly those a rebuild from the restored WALs gives, for a point inside an open
 * decision, across runs, with intents both in the snapshot and in segments.
 */
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { WalWriter } from "../../src/wal/writer.js";
import { rebuildUncommittedIndex, uncommittedIndexPath } from "../../src/wal/recovery.js";
import { Workspace } from "../../src/workspace/layout.js";
import { archivedFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN_A = "run-a";
const RUN_B = "run-b";

/** Appends intents (`false`) and commits (`true`) of task_claimed for the given tasks, in order. */
async function append(f: ArchiveFixture, runId: string, steps: [task: string, committed: boolean][]) {
  const w = await WalWriter.open(f.ws, runId);
  try {
    for (const [task, committed] of steps)
      await w.append({ decision_type: "task_claimed", inputs: { task_id: task, attempt: 1 }, committed });
  } finally {
    await w.close();
  }
}

const rowsOf = async (sdd: string) =>
  (await readFile(uncommittedIndexPath(new Workspace(sdd)), "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { run_id: string; seq: number; entry_hash: string });

/** The index rows at run-b:2: every intent of run-a (snapshot and segments), then run-b's up to 2. */
const AT_B2: [string, number][] = [
  [RUN_A, 0],
  [RUN_A, 2],
  [RUN_A, 3],
  [RUN_A, 5],
  [RUN_B, 0],
  [RUN_B, 2],
];

describe("point restore: the uncommitted index from the intents seen while applying", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: string;

  before(async () => {
    let archive: () => Promise<void>;
    ({ scratch, f, store, archive } = await archivedFixture("bernstein-restore-intents-"));
    // In the snapshot: run-a seq 0-3 (intents at 0, 2 and 3; T-2 never closed).
    await append(f, RUN_A, [
      ["T-1", false],
      ["T-1", true],
      ["T-2", false],
      ["T-3", false],
    ]);
    await archive();
    // Segments: run-a seq 4-6 (intent at 5), then run-b seq 0-4 (intents at 0, 2 and 4).
    await append(f, RUN_A, [
      ["T-3", true],
      ["T-4", false],
      ["T-4", true],
    ]);
    await archive();
    await append(f, RUN_B, [
      ["T-5", false],
      ["T-5", true],
      ["T-6", false],
      ["T-6", true],
      ["T-7", false],
    ]);
    await archive();
  });
  after(async () => scratch.cleanup());

  const cases: { name: string; point: string[]; rows: [string, number][] }[] = [
    {
      name: "at an intent whose commit is past the point (inside an open decision)",
      point: ["--at-seq", `${RUN_B}:2`],
      rows: AT_B2,
    },
    {
      name: "at the latest point",
      point: ["--latest"],
      rows: [...AT_B2, [RUN_B, 4]],
    },
  ];
  for (const c of cases)
    it(`${c.name}: the rows a rebuild from the WALs gives, and no scratch left`, async () => {
      const restored = path.join(scratch.dir, `restored-${c.point.join("")}`, ".sdd");
      const r = await f.cli(["--json", "dr", "archive-restore", "--from", store, ...c.point], restored);
      assert.equal(r.code, 0, r.stderr);
      const written = await rowsOf(restored);
      assert.deepEqual(
        written.map((row) => [row.run_id, row.seq]),
        c.rows,
      );
      await rebuildUncommittedIndex(new Workspace(restored));
      assert.deepEqual(written, await rowsOf(restored));
      await assert.rejects(stat(path.join(restored, "runtime", "restore-intents")), { code: "ENOENT" });
      for (const cmd of [["wal", "verify"], ["audit", "verify"], ["doctor"]]) {
        const v = await f.cli(cmd, restored);
        assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
      }
    });
});
