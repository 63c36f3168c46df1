/**
 * A stream found wholly shipped and quiet is passed by later cycles with one stat. The shortcut
 * must never hide a change: a file rewritten in place (same inode, same size) is checked for
 * continuity again, new bytes are shipped, and a settled WAL run still reports its position (the
 * `--sync` gate reads it).
 */
import assert from "node:assert/strict";
import { appendFile, open, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  ContinuityLost,
  shipCycle,
  type SettledStream,
  type ShipperTarget,
} from "../../src/archive/shipper.js";
import { ReadBuffer, type StreamEnd } from "../../src/archive/streams.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { scratchDir, waitFor } from "../helpers.js";
import { appendDecisions } from "./support/archive-workspace.js";

const RUN = "run-settled";
const LOG = "runs/a.jsonl";
const WAL = `runtime/wal/${RUN}.wal.jsonl`;

const line = (i: number): string =>
  JSON.stringify({ timestamp: 1795744701 + i, n: i, note: "abcdefgh" }) + "\n";

/** A shipping target of a fresh generation, archived to a folder store beside the workspace. */
async function targetIn(
  dir: string,
  ws: Workspace,
  generation: string,
  settled: Map<string, SettledStream>,
): Promise<ShipperTarget> {
  return {
    store: await openCatalogue(path.join(dir, "archive")),
    ws,
    generation,
    ends: new Map<string, StreamEnd>(),
    readBuffer: new ReadBuffer(),
    settled,
    codec: { encrypted: false },
  };
}

test("settled streams: passed with a stat while unchanged, checked again once written to", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-archive-settled-");
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    for (let i = 0; i < 20; i++) await appendFile(ws.p(LOG), line(i));
    await appendDecisions(ws, RUN, 10);
    const settled = new Map<string, SettledStream>();
    const t = await targetIn(dir, ws, "g20261205T120000000Z-5e77", settled);
    const first = await shipCycle(t);
    assert.equal(first.segments, 2);

    // Recorded once a cycle finds the files quiet (their times two seconds old when it looked).
    await waitFor("both streams settled", async () => {
      await shipCycle(t);
      return settled.has(LOG) && settled.has(WAL);
    });
    const passed = await shipCycle(t);
    assert.equal(passed.segments, 0);
    assert.equal(passed.wal[RUN], 9, "a settled WAL run still reports the newest seq the store holds");

    // New bytes: shipped, and the stream is no longer settled until it is quiet again.
    await appendFile(ws.p(LOG), line(20));
    const grown = await shipCycle(t);
    assert.equal(grown.segments, 1);
    assert.equal(settled.has(LOG), false);
    await waitFor("the log settled again", async () => {
      await shipCycle(t);
      return settled.has(LOG);
    });

    // The last shipped line rewritten in place, same length: inode and size are unchanged, the
    // file's times are not, so the continuity check runs and finds the archive no longer matches.
    const text = await readFile(ws.p(LOG), "utf8");
    const last = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
    const forged = last.replace("abcdefgh", "ABCDEFGH");
    assert.equal(forged.length, last.length);
    const fh = await open(ws.p(LOG), "r+");
    await fh.write(forged, Buffer.byteLength(text) - Buffer.byteLength(last));
    await fh.close();
    await assert.rejects(shipCycle(t), ContinuityLost);
  } finally {
    await cleanup();
  }
});

test("settled streams: a removed file ends the generation when it was archived, and leaves no settled record when empty", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-archive-settled-gone-");
  const EMPTY = "runs/empty.jsonl";
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    for (let i = 0; i < 5; i++) await appendFile(ws.p(LOG), line(i));
    await appendFile(ws.p(EMPTY), "");
    const settled = new Map<string, SettledStream>();
    const t = await targetIn(dir, ws, "g20261205T120000000Z-90e5", settled);
    await waitFor("both logs settled", async () => {
      await shipCycle(t);
      return settled.has(LOG) && settled.has(EMPTY);
    });
    await rm(ws.p(EMPTY));
    const after = await shipCycle(t);
    assert.equal(after.segments, 0);
    assert.equal(settled.has(EMPTY), false);
    await rm(ws.p(LOG));
    await assert.rejects(shipCycle(t), (err: Error) => {
      assert.ok(err instanceof ContinuityLost, String(err));
      assert.match(err.message, /^runs\/a\.jsonl was removed after \d+ bytes of it were archived$/);
      return true;
    });
  } finally {
    await cleanup();
  }
});
