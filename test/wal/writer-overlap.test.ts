/**
 * Pipelined groups whose fdatasyncs overlap: a group is written while older groups still sync,
 * and each is acknowledged only after its own sync returned and every older group was
 * acknowledged. A failure rejects every group not yet acknowledged, older ones still syncing
 * included, and everything after it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { readWalEntries, verifyWal } from "../../src/wal/reader.js";
import { uncommittedIndexPath } from "../../src/wal/recovery.js";
import { WalWriter } from "../../src/wal/writer.js";
import { REPO_ROOT } from "../helpers.js";
import { AlwaysPipelined, lines, record, scratchWorkspace } from "./support/wal-helpers.js";

const FAILER = path.join(REPO_ROOT, "dist", "test", "wal", "support", "overlap-failer.js");

test("overlapping syncs: acknowledgements in seq order, each after its group's syncs (the index's too)", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-o", { pacing: new AlwaysPipelined() });
    const durable: number[] = [];
    w.onDurable((p) => durable.push(p.seq));
    const total = 6000;
    let next = 0;
    let mostSyncs = 0;
    const acked: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < total) {
          // Every 5th append is an intent: its index row is written and synced with its group.
          const i = next++;
          const e = await w.append(record(i, i % 5 !== 0));
          mostSyncs = Math.max(mostSyncs, w.syncsInFlight);
          assert.ok(w.durablePosition!.seq >= e.seq, `seq ${e.seq} acknowledged before its sync`);
          acked.push(e.seq);
        }
      }),
    );
    assert.ok(mostSyncs >= 2, `syncs never overlapped (at most ${mostSyncs} running)`);
    assert.deepEqual(
      acked,
      Array.from({ length: total }, (_, i) => i),
      "acknowledged in seq order",
    );
    for (let i = 1; i < durable.length; i++) assert.ok(durable[i] > durable[i - 1], "positions only grow");
    await w.close();
    const v = await verifyWal(ws.walFile("run-o"), "run-o");
    assert.equal(v.ok, true);
    assert.equal(v.entries, total);
    const rows = (await lines(uncommittedIndexPath(ws))).map((l) => JSON.parse(l) as { seq: number });
    assert.deepEqual(
      rows.map((r) => r.seq),
      Array.from({ length: total / 5 }, (_, k) => k * 5),
      "every intent's index row, in seq order",
    );
  } finally {
    await cleanup();
  }
});

interface FailerResult {
  events: string[];
  syncsAtFailure: number;
  late: string;
}

/** The failer under a file size limit (`ulimit -f`, 512-byte blocks): a write past it fails. */
function runFailer(sdd: string, runId: string, limitBlocks: number): Promise<FailerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "sh",
      ["-c", `ulimit -f ${limitBlocks} && exec "$0" "$@"`, process.execPath, FAILER, sdd, runId],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`failer exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as FailerResult);
    });
  });
}

test("a write failing while older groups sync: nothing is acknowledged after it, every acknowledged entry is on disk", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    let withSyncsRunning = 0;
    for (let attempt = 0; attempt < 5 && withSyncsRunning === 0; attempt++) {
      const runId = `run-f${attempt}`;
      const r = await runFailer(ws.root, runId, 400);
      const firstRejection = r.events.findIndex((e) => e.startsWith("rej "));
      assert.ok(firstRejection > 0, "some appends were acknowledged before the failure");
      const acked = new Map<number, string>();
      for (const [i, e] of r.events.entries()) {
        const [kind, seq, rest] = e.split(" ", 3);
        if (i >= firstRejection) {
          assert.equal(kind, "rej", `an acknowledgement after the failure: ${e}`);
          assert.match(e, /WalClosedError: .*failed closed.*EFBIG/);
          continue;
        }
        assert.equal(Number(seq), acked.size, "acknowledged in seq order, none skipped");
        acked.set(Number(seq), rest);
      }
      assert.equal(r.late, "WalClosedError", "an append after the failure is rejected");
      if (r.syncsAtFailure > 0) withSyncsRunning++;

      // Reopened without the limit: the partial group is a torn tail, every acknowledged entry stays.
      const w = await WalWriter.open(ws, runId);
      assert.ok(w.nextSequence >= acked.size);
      await w.close();
      const v = await verifyWal(ws.walFile(runId), runId);
      assert.equal(v.ok, true, JSON.stringify(v.errors.slice(0, 3)));
      let found = 0;
      for await (const { entry } of readWalEntries(ws.walFile(runId))) {
        const want = acked.get(entry.seq);
        if (want === undefined) continue;
        assert.equal(entry.entry_hash, want, `seq ${entry.seq}`);
        found++;
      }
      assert.equal(found, acked.size, "acknowledged entries missing");
    }
    assert.ok(withSyncsRunning > 0, "the write never failed while group syncs were running");
  } finally {
    await cleanup();
  }
});
