import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { canonicalJson, orderedJson, parseJson, type JsonValue } from "../../src/json/canonical.js";
import { sha256Hex } from "../../src/wal/entry.js";
import { fingerprintWal } from "../../src/wal/fingerprint.js";
import { WalReadError, listRuns, readTailPosition, readWalEntries, verifyWal } from "../../src/wal/reader.js";
import { WalWriter } from "../../src/wal/writer.js";
import { PYTHON_REFERENCE, pythonReferenceFacts } from "../helpers.js";
import { lines, record, scratchWorkspace } from "./support/wal-helpers.js";

const GOLDEN_DIR = path.join(PYTHON_REFERENCE, "workspace", ".sdd", "runtime", "wal");
const GOLDEN = path.join(GOLDEN_DIR, "run-golden.wal.jsonl");
const expected = pythonReferenceFacts();

test("the Python reference WAL verifies, and its fingerprint and last hash match expected.json", async () => {
  const v = await verifyWal(GOLDEN, "run-golden");
  assert.equal(v.ok, true, JSON.stringify(v.errors));
  assert.equal(v.entries, expected.wal.entries);
  assert.equal(v.last_hash, expected.wal.last_entry_hash);
  const fp = await fingerprintWal(GOLDEN);
  assert.equal(fp.fingerprint, expected.wal.fingerprint);
  assert.equal(fp.entries, expected.wal.entries);
  const tail = await readTailPosition(GOLDEN);
  assert.deepEqual(tail, {
    last_seq: expected.wal.entries - 1,
    last_hash: expected.wal.last_entry_hash,
    size: v.bytes,
    valid_end: v.bytes,
    torn: false,
  });
});

async function brokenCopy(
  edit: (lines: string[]) => string,
): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const { ws, cleanup } = await scratchWorkspace();
  const file = ws.walFile("run-golden");
  await writeFile(file, edit(await lines(GOLDEN)));
  return { file, cleanup };
}

const join = (ls: string[]) => ls.join("\n") + "\n";

const BREAKS: Array<[string, (ls: string[]) => string, { seq: number; line: number; kind: string }]> = [
  [
    "a changed value",
    (ls) => join(ls.map((l, i) => (i === 7 ? l.replace('"batch":7', '"batch":8') : l))),
    { seq: 7, line: 8, kind: "hash_mismatch" },
  ],
  ["a deleted line", (ls) => join(ls.filter((_, i) => i !== 12)), { seq: 13, line: 13, kind: "seq_gap" }],
  [
    "swapped lines",
    (ls) => join(ls.map((l, i) => (i === 20 ? ls[21] : i === 21 ? ls[20] : l))),
    { seq: 21, line: 21, kind: "seq_gap" },
  ],
  [
    "a rewritten prev_hash with a matching entry_hash",
    (ls) => {
      // Re-chain line 30 onto a wrong predecessor while keeping its own hash valid.
      const o = parseJson(ls[30]) as Record<string, JsonValue>;
      o.prev_hash = "f".repeat(64);
      const { entry_hash: _old, ...rest } = o;
      o.entry_hash = sha256Hex(canonicalJson(rest));
      return join(ls.map((l, i) => (i === 30 ? orderedJson(o) : l)));
    },
    { seq: 30, line: 31, kind: "prev_hash_mismatch" },
  ],
  [
    "invalid JSON",
    (ls) => join(ls.map((l, i) => (i === 3 ? l.slice(0, 40) : l))),
    { seq: 3, line: 4, kind: "invalid_json" },
  ],
  ["a torn last line", (ls) => join(ls).slice(0, -20), { seq: 39, line: 40, kind: "invalid_json" }],
];

for (const [what, edit, want] of BREAKS) {
  test(`verify reports ${what} with run, seq and line`, async () => {
    const { file, cleanup } = await brokenCopy(edit);
    try {
      const v = await verifyWal(file, "run-golden");
      assert.equal(v.ok, false);
      const first = v.errors[0];
      assert.deepEqual(
        { seq: first.seq, line: first.line, kind: first.kind, run: first.run_id },
        { ...want, run: "run-golden" },
        JSON.stringify(v.errors),
      );
    } finally {
      await cleanup();
    }
  });
}

test("verify reports non-UTF-8 bytes, a folder and an unreadable file as corrupt, never throwing", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const bad = ws.walFile("run-u");
    const ls = await lines(GOLDEN);
    await writeFile(
      bad,
      Buffer.concat([
        Buffer.from(ls.slice(0, 5).join("\n") + "\n"),
        Buffer.from([0xff, 0xfe, 0x0a]),
        Buffer.from(ls.slice(6).join("\n") + "\n"),
      ]),
    );
    const v = await verifyWal(bad, "run-u");
    assert.equal(v.errors[0].kind, "invalid_utf8");
    assert.equal(v.errors[0].line, 6);
    assert.equal(v.errors[0].seq, 5);

    const folder = ws.walFile("run-d");
    await mkdir(folder);
    const d = await verifyWal(folder, "run-d");
    assert.equal(d.ok, false);
    assert.deepEqual([d.errors[0].kind, d.errors[0].line], ["unreadable", 1]);
    assert.match(d.errors[0].message, /folder/);

    if (process.getuid?.() !== 0) {
      const locked = ws.walFile("run-l");
      await copyFile(GOLDEN, locked);
      await chmod(locked, 0);
      const l = await verifyWal(locked, "run-l");
      assert.equal(l.errors[0].kind, "unreadable");
    }
  } finally {
    await cleanup();
  }
});

test("readWalEntries streams from a seq, tolerates a torn tail, and throws on damage inside", async () => {
  const seqs: number[] = [];
  for await (const { entry, lineNo } of readWalEntries(GOLDEN, { fromSeq: 35 })) {
    seqs.push(entry.seq);
    assert.equal(lineNo, entry.seq + 1);
  }
  assert.deepEqual(seqs, [35, 36, 37, 38, 39]);

  const torn = await brokenCopy((ls) => join(ls).slice(0, -30));
  try {
    let n = 0;
    for await (const _ of readWalEntries(torn.file)) n++;
    assert.equal(n, 39);
    await assert.rejects(async () => {
      for await (const _ of readWalEntries(torn.file, { tolerateTornTail: false }));
    }, WalReadError);
  } finally {
    await torn.cleanup();
  }

  const inside = await brokenCopy((ls) =>
    join(ls.map((l, i) => (i === 10 ? l.replace('"batch":10', '"batch":11') : l))),
  );
  try {
    const got: number[] = [];
    await assert.rejects(
      async () => {
        for await (const { entry } of readWalEntries(inside.file)) got.push(entry.seq);
      },
      (e: unknown) =>
        e instanceof WalReadError &&
        e.error.seq === 10 &&
        e.error.line === 11 &&
        e.error.kind === "hash_mismatch",
    );
    assert.equal(got.length, 10, "entries before the damage were handed out");
  } finally {
    await inside.cleanup();
  }
});

test("readWalEntries handles lines longer than its buffer and many chunks", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-big");
    await w.append({ decision_type: "task_created", inputs: { blob: "x".repeat(3 << 20) }, committed: true });
    for (let i = 0; i < 3000; i++) void w.append(record(i));
    await w.close();
    let n = 0;
    for await (const { entry } of readWalEntries(ws.walFile("run-big"))) {
      assert.equal(entry.seq, n++);
    }
    assert.equal(n, 3001);
    assert.equal((await verifyWal(ws.walFile("run-big"), "run-big")).ok, true);
  } finally {
    await cleanup();
  }
});

test("listRuns orders runs by first entry time, then name, and ignores sidecars", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const mk = async (run: string, t: number) => {
      const w = await WalWriter.open(ws, run, { clock: () => t });
      await w.append(record(0));
      await w.close({ markClosed: true });
    };
    await mk("run-b", 200.5);
    await mk("run-a", 300.5);
    await mk("run-c", 100.5);
    await mk("run-d", 200.5);
    await writeFile(path.join(ws.walDir, "run-a.wal.jsonl.torn-x"), "junk");
    const runs = await listRuns(ws);
    assert.deepEqual(
      runs.map((r) => r.run_id),
      ["run-c", "run-b", "run-d", "run-a"],
    );
    assert.equal(runs[0].first_timestamp, 100.5);
  } finally {
    await cleanup();
  }
});

test("readTailPosition reports a torn tail without repairing it", async () => {
  const torn = await brokenCopy((ls) => join(ls) + '{"seq":40,');
  try {
    const before = await readFile(torn.file);
    const t = await readTailPosition(torn.file);
    assert.equal(t.torn, true);
    assert.equal(t.last_seq, 39);
    assert.equal(t.last_hash, expected.wal.last_entry_hash);
    assert.deepEqual(await readFile(torn.file), before);
  } finally {
    await torn.cleanup();
  }
});

test("the parallel verifier reports exactly what the sequential one does", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-p");
    const pending = [];
    for (let i = 0; i < 9000; i++) pending.push(w.append(record(i, i % 2 === 0)));
    await Promise.all(pending);
    await w.close();
    const file = ws.walFile("run-p");
    const good = await lines(file);
    const variants: Array<[string, string]> = [
      ["clean", join(good)],
      [
        "changed value deep inside",
        join(good.map((l, i) => (i === 5000 ? l.replace('"attempt":1', '"attempt":7') : l))),
      ],
      ["deleted line at a chunk edge region", join(good.filter((_, i) => i !== 2700))],
      ["garbage lines", join(good.map((l, i) => (i === 100 || i === 8000 ? "garbage" : l)))],
      ["torn tail", join(good).slice(0, -10)],
    ];
    for (const [what, text] of variants) {
      await writeFile(file, text);
      const seq = await verifyWal(file, "run-p", { workers: 0 });
      const par = await verifyWal(file, "run-p", { workers: 2 });
      assert.equal(par.workers, 2, "the worker threads ran");
      assert.deepEqual({ ...par, workers: 0 }, seq, what);
      assert.equal(seq.ok, what === "clean", what);
    }
  } finally {
    await cleanup();
  }
});
