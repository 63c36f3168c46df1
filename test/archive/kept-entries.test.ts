/**
 * A point restore builds its state from the entries the segments' chain check builds on the way
 * (LineCutter `entriesWanted`), instead of parsing the lines it kept again. Those entries must be
 * what a reader of the WAL gets (toWalEntry of the parsed line), for exactly the wanted lines up
 * to the cut, whichever path checked them: the canonical-token one, the general parser for a line
 * the token reader does not take, and the line-by-line one.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LineCutter, type Cut } from "../../src/archive/apply-segments.js";
import { emptyEnd } from "../../src/archive/streams.js";
import { parseJson, PyFloat, type JsonValue } from "../../src/json/canonical.js";
import type { JsonObject } from "../../src/json/object.js";
import { readCanonicalLine } from "../../src/wal/canonical-line.js";
import { GENESIS_HASH, buildEntryWithLine, toWalEntry, type WalEntry } from "../../src/wal/entry.js";
import { withSeed } from "../helpers.js";

const STREAM = "runtime/wal/run-kept.wal.jsonl";
const TYPES = ["task_created", "task_claimed", "task_completed", "tick_start", "t\u00e5sk_note"];
const WANTED_TYPES = new Set(["task_claimed", "task_completed", "t\u00e5sk_note"]);
const wants = (type: string, committed: boolean): boolean => committed && WANTED_TYPES.has(type);

/**
 * Inputs of the forms a WAL holds: escapes, non-ASCII, floats, nesting, integers past 2^53, and
 * Python's Infinity, which the token reader leaves to the general parser.
 */
function inputsOf(r: () => number, seq: number): JsonObject {
  const inputs: JsonObject = { task_id: `T-${seq}` };
  if (r() < 0.3) inputs.note = `say "hi" \\ \u00e5 ${seq}`;
  if (r() < 0.3) inputs.cost_usd = new PyFloat(Math.round(r() * 100) / 4);
  if (r() < 0.2) inputs.nested = { list: [1, 2.5, null, true, "x"], empty: {} };
  if (r() < 0.1) inputs.big = 12345678901234567890n;
  if (r() < 0.05) inputs.limit = new PyFloat(Number.POSITIVE_INFINITY);
  return inputs;
}

/**
 * n chained lines; in the second half, a few with a timestamp no writer prints (NaN), which only
 * the line-by-line path reads (the chunk holding one is read that way up to the cut).
 */
function randomLines(r: () => number, n: number): string[] {
  const lines: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 0; seq < n; seq++) {
    const { entry, line } = buildEntryWithLine(
      {
        decision_type: TYPES[Math.floor(r() * TYPES.length)]!,
        inputs: inputsOf(r, seq),
        ...(r() < 0.3 ? { output: { exit_code: 0, cost_usd: 0.0123 } as JsonObject } : {}),
        committed: r() < 0.7,
      },
      seq,
      prev,
      seq >= n / 2 && r() < 0.04 ? Number.NaN : 1795744701.123456 + seq,
    );
    prev = entry.entry_hash;
    lines.push(line);
  }
  return lines;
}

/**
 * Feeds `lines` to a cutter in chunks of whole lines (up to `maxChunk` lines, drawn from `r`);
 * returns what it kept.
 */
function cutInChunks(
  r: () => number,
  lines: string[],
  cut: Cut,
  maxChunk: number,
): { kept: WalEntry[]; keptLines: number } {
  const cutter = new LineCutter(STREAM, "seg", emptyEnd(STREAM), cut, { entriesWanted: wants });
  const kept: WalEntry[] = [];
  let keptBytes = 0;
  for (let i = 0; i < lines.length && !cutter.done;) {
    const n = 1 + Math.floor(r() * maxChunk);
    const chunk = Buffer.from(lines.slice(i, i + n).join(""));
    i += n;
    keptBytes += cutter.takeLines(chunk).length;
    kept.push(...cutter.kept);
  }
  const all = Buffer.from(lines.join(""));
  const keptLines = all.subarray(0, keptBytes).toString().split("\n").length - 1;
  return { kept, keptLines };
}

test("a cutter's kept entries are the parsed entries of the wanted lines up to the cut", () =>
  withSeed("KEPT_ENTRIES_SEED", async (r) => {
    const lines = randomLines(r, 1500);
    const parsed = lines.map((l) => toWalEntry(parseJson(l.trimEnd()) as JsonObject));
    // Both other paths are taken by wanted lines: one the token reader refuses (it holds
    // Infinity) in a chunk checked whole, and one with a NaN timestamp, read line by line.
    // The last case below cuts just before the first, in one chunk: it must not be kept.
    const refused = (l: string) => {
      const b = Buffer.from(l);
      return readCanonicalLine(b, 0, b.length) < 0;
    };
    const wanted = (i: number) => wants(parsed[i]!.decision_type, parsed[i]!.committed);
    const generalOnly = lines.findIndex((l, i) => i > 0 && i < lines.length / 2 && wanted(i) && refused(l));
    assert.ok(generalOnly > 0, "a wanted line is read by the general parser");
    assert.ok(
      parsed.some((e, i) => wanted(i) && Number.isNaN(e.timestamp)),
      "a wanted line is read line by line",
    );
    const cases: [cutSeq: number | undefined, maxChunk: number][] = [
      [undefined, 40],
      [0, 40],
      [1 + Math.floor(r() * 1400), 40],
      [lines.length - 1, 40],
      [generalOnly - 1, lines.length],
    ];
    for (const [cutSeq, maxChunk] of cases) {
      const cut: Cut =
        cutSeq === undefined
          ? { atMs: Number.MAX_SAFE_INTEGER }
          : { atMs: Number.MAX_SAFE_INTEGER, run: "run-kept", seq: cutSeq };
      const { kept, keptLines } = cutInChunks(r, lines, cut, maxChunk);
      assert.equal(keptLines, cutSeq === undefined ? lines.length : cutSeq + 1, `lines kept, cut ${cutSeq}`);
      const expected = parsed.slice(0, keptLines).filter((e) => wants(e.decision_type, e.committed));
      assert.deepEqual(kept as unknown as JsonValue, expected as unknown as JsonValue, `cut ${cutSeq}`);
    }
  }));
