/** Run ids and WAL file names: one mapping both ways, and the runs a WAL folder holds. */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  closedMarkerFile,
  listWalRunFiles,
  runIdOfClosedMarker,
  runIdOfWalFile,
  walRunFilesIn,
} from "../../src/wal/run-files.js";
import { closedMarkerPath } from "../../src/wal/recovery.js";
import { scratchWorkspace } from "./support/wal-helpers.js";

test("a run id and its WAL file name map both ways; other files are no run", () => {
  assert.equal(runIdOfWalFile("run-a.wal.jsonl"), "run-a");
  assert.equal(runIdOfWalFile("/x/.sdd/runtime/wal/run-golden.wal.jsonl"), "run-golden");
  assert.equal(runIdOfWalFile("run-a.wal.jsonl.torn-20261203T000000000Z-abcd"), undefined);
  assert.equal(runIdOfWalFile("run-a.wal.closed"), undefined);
  assert.equal(runIdOfWalFile(".run-a.wal.jsonl.tmp-1-ab"), undefined);
  assert.equal(runIdOfClosedMarker("run-a.wal.closed"), "run-a");
  assert.equal(runIdOfClosedMarker("run-a.wal.jsonl"), undefined);
  assert.equal(closedMarkerFile("/w", "run-a"), path.join("/w", "run-a.wal.closed"));
  assert.deepEqual(walRunFilesIn("/w", ["b.wal.jsonl", "notes.txt", "a.wal.jsonl"]), [
    { run_id: "b", file: path.join("/w", "b.wal.jsonl") },
    { run_id: "a", file: path.join("/w", "a.wal.jsonl") },
  ]);
});

test("listWalRunFiles lists the runs of a folder, none for a missing one", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    assert.equal(runIdOfWalFile(ws.walFile("run-x.y")), "run-x.y");
    assert.equal(runIdOfClosedMarker(closedMarkerPath(ws, "run-x.y")), "run-x.y");
    for (const name of ["run-a.wal.jsonl", "run-b.wal.jsonl", "run-a.wal.closed", "run-a.wal.jsonl.torn-x"])
      await writeFile(path.join(ws.walDir, name), "");
    await mkdir(path.join(ws.walDir, "sub"));
    const runs = (await listWalRunFiles(ws.walDir)).sort((a, b) => (a.run_id < b.run_id ? -1 : 1));
    assert.deepEqual(runs, [
      { run_id: "run-a", file: ws.walFile("run-a") },
      { run_id: "run-b", file: ws.walFile("run-b") },
    ]);
    assert.deepEqual(await listWalRunFiles(path.join(ws.walDir, "missing")), []);
    await assert.rejects(listWalRunFiles(ws.walFile("run-a")), { code: "ENOTDIR" });
  } finally {
    await cleanup();
  }
});
