/**
 * Tamper test: flipping any single byte of a line is reported at that line's seq (exit 1 from
 * the CLI). Every byte of two full lines (the first and the last of the Python reference WAL)
 * with two flips each, and a spread of positions covering every field of every other line.
 */
import assert from "node:assert/strict";
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { WAL_FIELDS, type WalEntry } from "../../src/wal/entry.js";
import { verifyWal } from "../../src/wal/reader.js";
import { FIXTURES, runCli, runMain } from "../helpers.js";
import { scratchWorkspace } from "./support/wal-helpers.js";

const GOLDEN = path.join(
  FIXTURES,
  "python-reference",
  "workspace",
  ".sdd",
  "runtime",
  "wal",
  "run-golden.wal.jsonl",
);

/** Byte offset of each line's start (line i holds seq i in the reference WAL). */
function lineStarts(buf: Buffer): number[] {
  const starts = [0];
  for (let i = 0; i < buf.length - 1; i++) if (buf[i] === 0x0a) starts.push(i + 1);
  return starts;
}

/** Offsets inside line `i` that hit every field: its key, its first and last value byte. */
function fieldOffsets(line: string): number[] {
  const out = new Set<number>([0, line.length - 1, line.length]); // braces and the newline
  for (const field of WAL_FIELDS) {
    const key = line.indexOf(`"${field}":`);
    assert.ok(key >= 0, field);
    const valueStart = key + field.length + 3;
    const next = WAL_FIELDS[WAL_FIELDS.indexOf(field) + 1];
    const valueEnd = next ? line.indexOf(`,"${next}":`) - 1 : line.length - 2;
    out
      .add(key + 1)
      .add(valueStart)
      .add(valueEnd)
      .add((valueStart + valueEnd) >> 1);
  }
  return [...out];
}

test("flipping any single byte is reported at that seq", async () => {
  const original = await readFile(GOLDEN);
  const starts = lineStarts(original);
  const lastSeq = starts.length - 1;
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = ws.walFile("run-golden");
    const cases: Array<{ seq: number; offset: number }> = [];
    for (const seq of [0, lastSeq]) {
      const end = seq === lastSeq ? original.length : starts[seq + 1];
      for (let off = starts[seq]; off < end; off++) cases.push({ seq, offset: off });
    }
    for (let seq = 1; seq < lastSeq; seq++) {
      const text = original.toString("latin1", starts[seq], starts[seq + 1] - 1);
      for (const rel of fieldOffsets(text)) cases.push({ seq, offset: starts[seq] + rel });
    }
    let checked = 0;
    // The file holds the original; each copy is that byte flipped in place, then put back.
    await writeFile(file, original);
    const handle = await open(file, "r+");
    try {
      for (const { seq, offset } of cases) {
        for (const mask of [0x01, 0x20, 0x80]) {
          await handle.write(Buffer.of(original[offset] ^ mask), 0, 1, offset);
          const v = await verifyWal(file, "run-golden");
          await handle.write(original, offset, 1, offset);
          const where = `seq ${seq}, byte ${offset - starts[seq]} (${JSON.stringify(String.fromCharCode(original[offset]))}) ^ ${mask}`;
          assert.equal(v.ok, false, where);
          assert.ok(
            v.errors.some((e) => e.seq === seq && e.line === seq + 1 && e.run_id === "run-golden"),
            `${where}: ${JSON.stringify(v.errors)}`,
          );
          checked++;
        }
      }
    } finally {
      await handle.close();
    }
    assert.deepEqual(await readFile(file), original, "every flip was put back");
    assert.ok(checked > 2100, `${checked} tampered copies checked`);
  } finally {
    await cleanup();
  }
});

test("the CLI exits 1 for a flipped byte and names the seq", async () => {
  const original = await readFile(GOLDEN);
  const starts = lineStarts(original);
  const { ws, cleanup } = await scratchWorkspace();
  try {
    // A closed run: on a run left open, a bad last line is the torn tail start cuts (docs/wal.md).
    const last = JSON.parse(original.toString("utf8").trimEnd().split("\n").at(-1)!) as WalEntry;
    await writeFile(
      path.join(ws.walDir, "run-golden.wal.closed"),
      JSON.stringify({
        run_id: "run-golden",
        closed_at: new Date(0).toISOString(),
        last_seq: last.seq,
        last_hash: last.entry_hash,
      }),
    );
    for (const [seq, rel] of [
      [12, 3],
      [25, 100],
      [39, 20],
    ]) {
      const tampered = Buffer.from(original);
      tampered[starts[seq] + rel] ^= 0x01;
      await writeFile(ws.walFile("run-golden"), tampered);
      // The first as a real process; the others by main() in this process, the same command.
      const r = await (seq === 12 ? runCli : runMain)(["--sdd", ws.root, "wal", "verify"]);
      assert.equal(r.code, 1);
      assert.match(r.stdout, new RegExp(`run-golden: seq ${seq}, line ${seq + 1}: `));
    }
  } finally {
    await cleanup();
  }
});
