import assert from "node:assert/strict";
import { appendFile, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { PyFloat, canonicalJson, parseJson } from "../../src/json/canonical.js";
import { GENESIS_HASH, WAL_FIELDS, checkLine, entryLine, sha256Hex } from "../../src/wal/entry.js";
import { KEPT_CAPACITY } from "../../src/wal/line-buffer.js";
import { verifyWal } from "../../src/wal/reader.js";
import { readClosedMarker, uncommittedIndexPath } from "../../src/wal/recovery.js";
import { WalClosedError, WalWriter, newRunId } from "../../src/wal/writer.js";
import type { WalEntry, WalPosition, WalRecord } from "../../src/wal/entry.js";
import { lines, record, scratchWorkspace } from "./support/wal-helpers.js";

test("appends form a hash chain in Python's line format, and reopening continues it", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-a", { clock: () => 1795744701 });
    assert.equal(w.repair, undefined);
    const e0 = await w.append(record(0, false));
    const e1 = await w.append(record(1));
    assert.equal(e0.seq, 0);
    assert.equal(e0.prev_hash, GENESIS_HASH);
    assert.equal(e1.seq, 1);
    assert.equal(e1.prev_hash, e0.entry_hash);
    await w.close();

    const w2 = await WalWriter.open(ws, "run-a");
    const e2 = await w2.append(record(2));
    assert.equal(e2.seq, 2);
    assert.equal(e2.prev_hash, e1.entry_hash);
    await w2.close();

    const text = await lines(ws.walFile("run-a"));
    assert.equal(text.length, 3);
    // Field order, compact separators, ASCII only, integral timestamp printed as a float.
    assert.match(
      text[0],
      /^\{"seq":0,"prev_hash":"0{64}","timestamp":1795744701\.0,"decision_type":"task_claimed",/,
    );
    assert.deepEqual(Object.keys(parseJson(text[1]) as object), [...WAL_FIELDS]);
    assert.match(text[1], /"title":"caf\\u00e9 \\ud83d\\ude80 1"/);
    assert.match(text[1], /"big":18446744073709551616/);
    for (const line of text) {
      assert.ok(/^[\x20-\x7e]+$/.test(line), "ASCII only");
      // Re-hash the line's canonical form: byte-identical to the stored hash.
      const raw = parseJson(line) as Record<string, unknown>;
      const { entry_hash, ...rest } = raw;
      assert.equal(sha256Hex(canonicalJson(rest)), entry_hash);
      assert.ok(checkLine(line).ok);
    }
    assert.ok((parseJson(text[0]) as Record<string, unknown>).timestamp instanceof PyFloat);
    const v = await verifyWal(ws.walFile("run-a"), "run-a");
    assert.equal(v.ok, true, JSON.stringify(v.errors));
    assert.equal(v.last_seq, 2);
  } finally {
    await cleanup();
  }
});

test("appends issued together are group-committed: one durable event, seqs in call order", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-g");
    const events: WalPosition[] = [];
    w.onDurable((p) => events.push(p));
    const all = await Promise.all(Array.from({ length: 64 }, (_, i) => w.append(record(i))));
    assert.deepEqual(
      all.map((e) => e.seq),
      Array.from({ length: 64 }, (_, i) => i),
    );
    assert.equal(events.length, 1, "64 appends in one tick share one write and one sync");
    assert.deepEqual(events[0], { runId: "run-g", seq: 63, entry_hash: all[63].entry_hash });
    assert.deepEqual(w.durablePosition, events[0]);
    // Appends that keep arriving while a sync is in flight are batched too.
    let next = 64;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 2000) {
          next++;
          await w.append(record(next));
        }
      }),
    );
    assert.ok(events.length < 2000 - 64, `batches: ${events.length}`);
    await w.close();
    const v = await verifyWal(ws.walFile("run-g"), "run-g");
    assert.equal(v.ok, true);
    assert.equal(v.entries, 2000);
  } finally {
    await cleanup();
  }
});

test("groups of one, groups past the kept buffer and a huge entry are written byte for byte", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-b");
    const written: WalEntry[] = [];
    // A group of one.
    written.push(await w.append(record(0)));
    // One group of 64 (~130 KB, past the buffer's first size), intents among them, keys and
    // values beyond ASCII.
    const wide = (i: number, committed: boolean): WalRecord => ({
      ...record(i, committed),
      inputs: { "cl\u00e9": `\u00e9\u{1F680}`.repeat(200 + i), n: i },
    });
    written.push(
      ...(await Promise.all(Array.from({ length: 64 }, (_, i) => w.append(wide(1 + i, i % 3 !== 0))))),
    );
    // One entry bigger than the size a buffer is kept at, then small groups again.
    written.push(
      await w.append({
        decision_type: "big",
        inputs: { blob: "\u00e9".repeat(KEPT_CAPACITY) },
        committed: true,
      }),
    );
    for (let i = 0; i < 3; i++) written.push(await w.append(record(100 + i, i !== 1)));
    await w.close();

    assert.deepEqual(
      written.map((e) => e.seq),
      Array.from({ length: written.length }, (_, i) => i),
    );
    const text = await readFile(ws.walFile("run-b"), "utf8");
    assert.equal(text, written.map(entryLine).join(""));
    const v = await verifyWal(ws.walFile("run-b"), "run-b");
    assert.equal(v.ok, true, JSON.stringify(v.errors));
    assert.equal(v.entries, written.length);
    const rows = (await lines(uncommittedIndexPath(ws))).map((l) => JSON.parse(l) as { seq: number });
    assert.deepEqual(
      rows.map((r) => r.seq),
      written.filter((e) => !e.committed).map((e) => e.seq),
    );
  } finally {
    await cleanup();
  }
});

test("intents get a row in the uncommitted index; close can write the closed marker", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-i");
    const a = await w.append(record(0, false));
    await w.append(record(1, true));
    const c = await w.append(record(2, false));
    await w.close({ markClosed: true, reason: "stop" });
    const rows = (await lines(uncommittedIndexPath(ws))).map((l) => JSON.parse(l));
    assert.deepEqual(rows, [
      { run_id: "run-i", seq: 0, entry_hash: a.entry_hash },
      { run_id: "run-i", seq: 2, entry_hash: c.entry_hash },
    ]);
    const marker = await readClosedMarker(ws, "run-i");
    assert.ok(marker && !("corrupt" in marker));
    assert.equal(marker.last_seq, 2);
    assert.equal(marker.last_hash, c.entry_hash);
    await assert.rejects(w.append(record(3)), WalClosedError);
  } finally {
    await cleanup();
  }
});

async function writeEntries(ws: Parameters<typeof WalWriter.open>[0], runId: string, n: number) {
  const w = await WalWriter.open(ws, runId);
  const out = [];
  for (let i = 0; i < n; i++) out.push(await w.append(record(i)));
  await w.close();
  return out;
}

const TORN_TAILS: Array<[string, (good: string[]) => string]> = [
  ["a last line without newline", () => '{"seq":5,"prev_hash":"ab'],
  ["an unparsable last line", () => "{not json}\n"],
  ["a last line with a bad hash", (good) => good[4].replace('"attempt":1', '"attempt":2') + "\n"],
  ["NUL padding after a crash", () => "\0".repeat(4096)],
  ["several bad lines", () => "garbage\n{}\n" + '{"seq":5'],
];

for (const [what, tail] of TORN_TAILS) {
  test(`open repairs ${what}: cut bytes kept in a sidecar, chain continues from the last valid entry`, async () => {
    const { ws, cleanup } = await scratchWorkspace();
    try {
      const written = await writeEntries(ws, "run-t", 5);
      const good = await lines(ws.walFile("run-t"));
      const torn = tail(good);
      await appendFile(ws.walFile("run-t"), torn);
      const w = await WalWriter.open(ws, "run-t");
      assert.ok(w.repair, "repair reported");
      assert.equal(w.repair.cut_bytes, Buffer.byteLength(torn));
      assert.equal(w.repair.kept_last_seq, 4);
      assert.equal(await readFile(w.repair.sidecar, "utf8"), torn);
      assert.match(path.basename(w.repair.sidecar), /^run-t\.wal\.jsonl\.torn-/);
      const e = await w.append(record(5));
      assert.equal(e.seq, 5);
      assert.equal(e.prev_hash, written[4].entry_hash);
      await w.close();
      const v = await verifyWal(ws.walFile("run-t"), "run-t");
      assert.equal(v.ok, true, JSON.stringify(v.errors));
      assert.equal(v.entries, 6);
    } finally {
      await cleanup();
    }
  });
}

test("a file holding only a torn line restarts at seq 0 with the bytes kept", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await writeFile(ws.walFile("run-z"), '{"seq":0,"prev');
    const w = await WalWriter.open(ws, "run-z");
    assert.equal(w.repair?.kept_last_seq, -1);
    assert.equal((await w.append(record(0))).seq, 0);
    await w.close();
  } finally {
    await cleanup();
  }
});

test("open reads only the end: damage far from the tail is left for verify to report", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await writeEntries(ws, "run-e", 600); // ~240 KB, more than the tail window
    const file = ws.walFile("run-e");
    const text = await readFile(file, "utf8");
    await writeFile(file, "X" + text.slice(1));
    const w = await WalWriter.open(ws, "run-e");
    assert.equal(w.repair, undefined);
    assert.equal((await w.append(record(600))).seq, 600);
    await w.close();
    const v = await verifyWal(file, "run-e");
    assert.equal(v.ok, false);
    assert.equal(v.errors[0].line, 1);
  } finally {
    await cleanup();
  }
});

test("a write error fails the writer closed until reopened; seqs are never handed out twice", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const first = await writeEntries(ws, "run-f", 3);
    const file = ws.walFile("run-f");
    const saved = await readFile(file);
    // A real failing device: every write to /dev/full fails with ENOSPC.
    await rm(file);
    await symlink("/dev/full", file);
    const w = await WalWriter.open(ws, "run-f");
    const batch = [w.append(record(0)), w.append(record(1)), w.append(record(2))];
    const results = await Promise.allSettled(batch);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.ok((r as PromiseRejectedResult).reason instanceof WalClosedError);
      assert.match(String((r as PromiseRejectedResult).reason.message), /failed closed.*ENOSPC/);
    }
    assert.ok(w.failed);
    await assert.rejects(w.append(record(3)), /failed closed/);
    await w.close({ markClosed: true });
    assert.equal(await readClosedMarker(ws, "run-f"), undefined, "no closed marker after a failure");

    // Back on a real file: reopening re-derives the tail from disk.
    await rm(file);
    await writeFile(file, saved);
    const w2 = await WalWriter.open(ws, "run-f");
    const e = await w2.append(record(3));
    assert.equal(e.seq, 3);
    assert.equal(e.prev_hash, first[2].entry_hash);
    await w2.close();
  } finally {
    await cleanup();
  }
});

test("a rejecting commit gate rejects its appends but the writer keeps going", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const seen: WalPosition[] = [];
    let refuse = true;
    const w = await WalWriter.open(ws, "run-q", {
      commitGate: async (pos) => {
        seen.push(pos);
        if (refuse) throw new Error("quorum not reached");
      },
    });
    await assert.rejects(w.append(record(0)), /quorum not reached/);
    refuse = false;
    const e = await w.append(record(1));
    assert.equal(e.seq, 1);
    assert.equal(w.failed, undefined);
    assert.deepEqual(
      seen.map((p) => p.seq),
      [0, 1],
    );
    await w.close();
    // The gated entry is durable locally all the same.
    assert.equal((await verifyWal(ws.walFile("run-q"), "run-q")).entries, 2);
  } finally {
    await cleanup();
  }
});

test("bad records reject without using a seq; one writer per file per process", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-b");
    await assert.rejects(w.append({ decision_type: "", inputs: {}, committed: true }), /decision_type/);
    await assert.rejects(w.append({ decision_type: "x", inputs: [] as never, committed: true }), /inputs/);
    await assert.rejects(WalWriter.open(ws, "run-b"), /already open/);
    await assert.rejects(WalWriter.open(ws, "../evil"), /invalid run id/);
    assert.equal((await w.append(record(0))).seq, 0);
    await w.close();
  } finally {
    await cleanup();
  }
});

test("newRunId has the documented format", () => {
  const id = newRunId(new Date("2026-11-27T02:18:27.123Z"));
  assert.match(id, /^run-20261127T021827123Z-[0-9a-f]{4}$/);
});

test("open leaves no stray files on a clean open", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await writeEntries(ws, "run-c", 2);
    assert.deepEqual(await readdir(ws.walDir), ["run-c.wal.jsonl"]);
  } finally {
    await cleanup();
  }
});
