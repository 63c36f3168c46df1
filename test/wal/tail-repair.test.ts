/**
 * WAL tail repair, the one way the writer, a follower, a promotion and a base snapshot cut a WAL:
 * bytes after the sound end go to a `.torn-*` sidecar, then the file is cut there.
 */
import assert from "node:assert/strict";
import { appendFile, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { IntegrityError } from "../../src/wal/continuation.js";
import { verifyWal } from "../../src/wal/reader.js";
import { cutAllAtFirstBreak, cutAtFirstBreak, repairTornTail } from "../../src/wal/tail-repair.js";
import { WalWriter } from "../../src/wal/writer.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { record, scratchWorkspace } from "./support/wal-helpers.js";

async function writeRun(ws: Workspace, runId: string, n: number): Promise<string> {
  const w = await WalWriter.open(ws, runId, { uncommittedIndex: false });
  for (let i = 0; i < n; i++) await w.append(record(i));
  await w.close();
  return ws.walFile(runId);
}

const sidecarsOf = async (ws: Workspace, runId: string) =>
  (await readdir(ws.walDir)).filter((n) => n.startsWith(`${runId}.wal.jsonl.torn-`));

test("repairTornTail cuts a torn last line back to the newest entry and keeps the cut bytes", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = await writeRun(ws, "run-t", 5);
    const sound = await readFile(file);
    const torn = '{"seq":5,"prev_hash":"ab';
    await appendFile(file, torn);
    const r = await repairTornTail(file, "run-t");
    assert.ok(r, "a repair is reported");
    assert.equal(r.run_id, "run-t");
    assert.equal(r.cut_offset, sound.length);
    assert.equal(r.cut_bytes, Buffer.byteLength(torn));
    assert.equal(r.kept_last_seq, 4);
    assert.deepEqual(await readFile(file), sound);
    assert.equal(await readFile(r.sidecar, "utf8"), torn);
    assert.deepEqual(await sidecarsOf(ws, "run-t"), [path.basename(r.sidecar)]);
    // A sound file, or none at all, is left alone.
    assert.equal(await repairTornTail(file, "run-t"), undefined);
    assert.equal(await repairTornTail(ws.walFile("run-none"), "run-none"), undefined);
    assert.deepEqual(await readFile(file), sound);
  } finally {
    await cleanup();
  }
});

test("repairTornTail also cuts a complete last line whose hash does not verify, as the writer does", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = await writeRun(ws, "run-h", 4);
    const text = await readFile(file, "utf8");
    const lines = text.split("\n").filter(Boolean);
    const bad = lines[3].replace('"T-3"', '"T-9"') + "\n"; // complete line, wrong hash
    await writeFile(file, lines.slice(0, 3).join("\n") + "\n" + bad);
    const r = await repairTornTail(file, "run-h");
    assert.ok(r);
    assert.equal(r.kept_last_seq, 2);
    assert.equal(await readFile(r.sidecar, "utf8"), bad);
    assert.equal(await readFile(file, "utf8"), lines.slice(0, 3).join("\n") + "\n");
  } finally {
    await cleanup();
  }
});

test("cutAtFirstBreak cuts before a tampered entry inside the file and keeps what it cut", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = await writeRun(ws, "run-x", 6);
    const lines = (await readFile(file, "utf8")).split("\n").filter(Boolean);
    const tampered = [...lines];
    tampered[3] = tampered[3].replace('"T-3"', '"T-7"'); // same length, hash no longer matches
    await writeFile(file, tampered.join("\n") + "\n");
    const err = await cutAtFirstBreak(file, "run-x");
    assert.ok(err instanceof IntegrityError);
    assert.equal(err.seq, 3);
    assert.match(err.message, /run-x#3: entry_hash does not match its content/);
    const v = await verifyWal(file, "run-x");
    assert.equal(v.ok, true);
    assert.equal(v.last_seq, 2);
    const [sidecar] = await sidecarsOf(ws, "run-x");
    assert.ok(sidecar, "the cut entries are kept beside the WAL");
    assert.equal(await readFile(path.join(ws.walDir, sidecar), "utf8"), tampered.slice(3).join("\n") + "\n");
    // Sound now: nothing more to cut.
    assert.equal(await cutAtFirstBreak(file, "run-x"), null);
    assert.equal((await sidecarsOf(ws, "run-x")).length, 1);
  } finally {
    await cleanup();
  }
});

test("cutAllAtFirstBreak checks every run of a folder and reports each break", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const good = await writeRun(ws, "run-good", 3);
    const before = await readFile(good);
    const bad = await writeRun(ws, "run-bad", 3);
    const lines = (await readFile(bad, "utf8")).split("\n").filter(Boolean);
    await writeFile(bad, [lines[0], lines[2]].join("\n") + "\n"); // seq 1 missing
    const errors = await cutAllAtFirstBreak(ws.walDir);
    assert.deepEqual(
      errors.map((e) => [e.runId, e.seq]),
      [["run-bad", 1]],
    );
    assert.deepEqual(await readFile(good), before);
    assert.equal(await readFile(bad, "utf8"), lines[0] + "\n");
    assert.deepEqual(await cutAllAtFirstBreak(path.join(ws.walDir, "missing")), []);
  } finally {
    await cleanup();
  }
});
