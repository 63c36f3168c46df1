import assert from "node:assert/strict";
import { cp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import type { Workspace } from "../../src/workspace/layout.js";
import {
  closedMarkerPath,
  findOpenIntents,
  findOrphanedClaims,
  findUncommittedEntries,
  readClosedMarker,
  uncommittedIndexPath,
  writeClosedMarker,
} from "../../src/wal/recovery.js";
import { WalWriter } from "../../src/wal/writer.js";
import type { WalRecord } from "../../src/wal/entry.js";
import { FIXTURES } from "../helpers.js";
import { scratchWorkspace } from "./support/wal-helpers.js";

const GOLDEN_WAL = path.join(FIXTURES, "python-reference", "workspace", ".sdd", "runtime", "wal");

async function goldenWorkspace() {
  const s = await scratchWorkspace();
  await cp(path.join(GOLDEN_WAL, "run-golden.wal.jsonl"), s.ws.walFile("run-golden"));
  await cp(path.join(GOLDEN_WAL, "uncommitted.idx.json"), uncommittedIndexPath(s.ws));
  return s;
}

const claim = (task: string, committed = false): WalRecord => ({
  decision_type: "task_claimed",
  inputs: { task_id: task, attempt: 1 },
  committed,
});
const spawn = (task: string, committed = true): WalRecord => ({
  decision_type: "task_spawn_confirmed",
  inputs: { task_id: task, attempt: 1, agent_id: `${task}#1` },
  committed,
});

async function run(ws: Workspace, runId: string, records: WalRecord[], t = 1000.5) {
  const w = await WalWriter.open(ws, runId, { clock: () => t });
  const out = [];
  for (const r of records) out.push(await w.append(r));
  await w.close();
  return out;
}

test("the Python index is used as is: rows checked against the WAL, nothing rebuilt", async () => {
  const { ws, cleanup } = await goldenWorkspace();
  try {
    const before = await readFile(uncommittedIndexPath(ws));
    const r = await findUncommittedEntries(ws);
    assert.equal(r.index.rebuilt, false);
    assert.equal(r.index.rows, 14);
    assert.deepEqual(r.index.runs_read, ["run-golden"]);
    assert.equal(r.entries.length, 14);
    assert.deepEqual(await readFile(uncommittedIndexPath(ws)), before);
  } finally {
    await cleanup();
  }
});

const DAMAGE: Array<[string, (text: string) => string, RegExp]> = [
  ["missing", () => "", /missing/],
  ["garbage", (t) => t + "{not json\n", /not JSON/],
  [
    "a row with the wrong hash",
    (t) => t.replace(/"seq":6,"entry_hash":"9/, '"seq":6,"entry_hash":"8'),
    /does not match/,
  ],
  [
    "a row lost",
    (t) =>
      t
        .split("\n")
        .filter((_, i) => i !== 3)
        .join("\n"),
    /has no row/,
  ],
  ["a row moved onto a commit", (t) => t.replace('"seq":3,', '"seq":4,'), /has no row|does not match/],
];

for (const [what, damage, reason] of DAMAGE) {
  test(`an index that is ${what} is rebuilt from the WAL, byte-identical to Python's`, async () => {
    const { ws, cleanup } = await goldenWorkspace();
    try {
      const file = uncommittedIndexPath(ws);
      const pythonIndex = await readFile(file, "utf8");
      if (what === "missing") await rm(file);
      else await writeFile(file, damage(pythonIndex));
      const r = await findUncommittedEntries(ws);
      assert.equal(r.index.rebuilt, true);
      assert.match(r.index.reason ?? "", reason);
      assert.equal(r.entries.length, 14);
      assert.equal(await readFile(file, "utf8"), pythonIndex);
      assert.deepEqual((await readdir(ws.walDir)).sort(), ["run-golden.wal.jsonl", "uncommitted.idx.json"]);
    } finally {
      await cleanup();
    }
  });
}

test("runs without rows are not read; rows past the end of a WAL are dropped; closed runs skipped", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const a = await run(ws, "run-a", [claim("T1"), claim("T1", true), claim("T2")], 100.5);
    await run(ws, "run-b", [claim("T9", true)], 200.5);
    // run-b is damaged, but the index says it has no intents, so it is never read.
    await writeFile(ws.walFile("run-b"), "garbage\n" + (await readFile(ws.walFile("run-b"), "utf8")));
    await run(ws, "run-c", [claim("T5")], 300.5);
    await writeClosedMarker(ws, { run_id: "run-c", closed_at: "x", last_seq: 0, last_hash: "h" });
    // A row for an intent that never became durable (seq past the end): dropped, no rebuild.
    await writeFile(
      uncommittedIndexPath(ws),
      (await readFile(uncommittedIndexPath(ws), "utf8")) +
        JSON.stringify({ run_id: "run-a", seq: 9, entry_hash: "ab" }) +
        "\n",
    );
    const r = await findUncommittedEntries(ws, { excludeRunId: "run-new" });
    assert.equal(r.index.rebuilt, false);
    assert.deepEqual(r.index.runs_read, ["run-a"]);
    assert.deepEqual(
      r.entries.map((e) => [e.run_id, e.seq, e.entry_hash]),
      [["run-a", 2, a[2].entry_hash]],
      "T1's intent is closed by its commit; T2's is open",
    );
    const withClosed = await findUncommittedEntries(ws, { includeClosed: true, excludeRunId: "run-a" });
    assert.deepEqual(
      withClosed.entries.map((e) => [e.run_id, e.seq]),
      [["run-c", 0]],
    );
  } finally {
    await cleanup();
  }
});

test("open intents pair with commits of the same type and inputs, oldest first", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const e = await run(ws, "run-o", [
      claim("T1"),
      claim("T1"),
      spawn("T1", false),
      claim("T1", true),
      spawn("T1"),
    ]);
    const open = await findOpenIntents(ws.walFile("run-o"));
    assert.deepEqual(
      open.map((x) => x.seq),
      [1],
    );
    assert.equal(open[0].entry_hash, e[1].entry_hash);
  } finally {
    await cleanup();
  }
});

test("closed markers are atomic JSON files next to the WAL", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    assert.equal(await readClosedMarker(ws, "run-m"), undefined);
    const marker = {
      run_id: "run-m",
      closed_at: "2026-11-27T00:00:00.000Z",
      last_seq: 4,
      last_hash: "f".repeat(64),
    };
    await writeClosedMarker(ws, marker);
    assert.deepEqual(JSON.parse(await readFile(closedMarkerPath(ws, "run-m"), "utf8")), marker);
    assert.deepEqual(await readClosedMarker(ws, "run-m"), marker);
    // A damaged marker is not a missing one: the run stays closed, and the loss of its end is named.
    await writeFile(closedMarkerPath(ws, "run-m"), "{torn");
    assert.deepEqual(await readClosedMarker(ws, "run-m"), { corrupt: "not JSON (5 bytes)" });
    await writeFile(closedMarkerPath(ws, "run-m"), JSON.stringify({ ...marker, run_id: "run-x" }));
    assert.deepEqual(await readClosedMarker(ws, "run-m"), { corrupt: 'it names run "run-x"' });
    assert.deepEqual(await readdir(ws.walDir), ["run-m.wal.closed"]);
  } finally {
    await cleanup();
  }
});

test("orphaned claims: claimed intents with no later spawn confirmation for the task", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const e = await run(ws, "run-c", [
      claim("T1"),
      claim("T2"),
      claim("T3"),
      spawn("T1"),
      claim("T4"),
      {
        decision_type: "task_failed",
        inputs: { task_id: "T3", attempt: 1 },
        output: { terminal: true },
        committed: true,
      },
      spawn("T5"),
      claim("T5"),
    ]);
    const orphans = await findOrphanedClaims(ws, "run-c");
    assert.deepEqual(
      orphans.map((o) => [o.inputs.task_id, o.seq]),
      [
        ["T2", 1],
        ["T4", 4],
        ["T5", 7],
      ],
    );
    assert.equal(orphans[0].entry_hash, e[1].entry_hash);
  } finally {
    await cleanup();
  }
});
