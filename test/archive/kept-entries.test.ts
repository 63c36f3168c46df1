/**
 * A point restore cuts a WAL segment's lines and builds its state from what the segments' chain
 * check reads on the way (LineCutter over checkBatch's verified lines): each line's seq, time,
 * commit flag and hash, and the entries wanted (`entriesWanted`), instead of reading lines again.
 * Those must be what a reader of the WAL gets (toWalEntry of the parsed line), for exactly the
 * lines up to the cut (a seq, or an instant), whichever way the check read a line: its canonical
 * tokens, or the general parser for a line the token reader does not take.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { LineCutter, type Cut, type KeptIntent } from "../../src/archive/apply-segments.js";
import { emptyEnd } from "../../src/archive/streams.js";
import { parseJson, PyFloat, type JsonValue } from "../../src/json/canonical.js";
import type { JsonObject } from "../../src/json/object.js";
import { readCanonicalLine } from "../../src/wal/canonical-line.js";
import {
  GENESIS_HASH,
  buildEntryWithLine,
  entryTimeMs,
  toWalEntry,
  type WalEntry,
} from "../../src/wal/entry.js";
import { withSeed } from "../helpers.js";

const RUN = "run-kept";
const STREAM = `runtime/wal/${RUN}.wal.jsonl`;
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
 * n chained lines a second apart; every 97th and a few others with a timestamp no writer prints
 * (NaN), which is never past an instant.
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
      seq % 97 === 96 || r() < 0.01 ? Number.NaN : 1795744701.123456 + seq,
    );
    prev = entry.entry_hash;
    lines.push(line);
  }
  return lines;
}

interface Cutting {
  kept: WalEntry[];
  intents: KeptIntent[];
  keptLines: number;
  cutter: LineCutter;
}

/** Feeds `lines` to a cutter in chunks of whole lines (up to `maxChunk` lines, drawn from `r`). */
function cutInChunks(r: () => number, lines: string[], cut: Cut, maxChunk: number): Cutting {
  const cutter = new LineCutter(STREAM, "seg", emptyEnd(STREAM), cut, {
    entriesWanted: wants,
    collectIntents: true,
  });
  const kept: WalEntry[] = [];
  let keptBytes = 0;
  for (let i = 0; i < lines.length && !cutter.done;) {
    const n = 1 + Math.floor(r() * maxChunk);
    const chunk = Buffer.from(lines.slice(i, i + n).join(""));
    i += n;
    keptBytes += cutter.takeLines(chunk).length;
    kept.push(...cutter.kept);
  }
  const keptLines = Buffer.from(lines.join("")).subarray(0, keptBytes).toString().split("\n").length - 1;
  return { kept, intents: cutter.intents, keptLines, cutter };
}

test("a cutter keeps the lines up to the cut and the parsed entries of the wanted ones", () =>
  withSeed("KEPT_ENTRIES_SEED", async (r) => {
    const lines = randomLines(r, 1500);
    const parsed = lines.map((l) => toWalEntry(parseJson(l.trimEnd()) as JsonObject));
    const wanted = (i: number) => wants(parsed[i]!.decision_type, parsed[i]!.committed);
    const refused = (l: string) => {
      const b = Buffer.from(l);
      return readCanonicalLine(b, 0, b.length) < 0;
    };
    // A wanted line the token reader refuses (it holds Infinity): the general parser reads it.
    // The last seq case cuts just before it, in one chunk: it must not be kept.
    const generalOnly = lines.findIndex((l, i) => i > 0 && wanted(i) && refused(l));
    assert.ok(generalOnly > 0, "a wanted line is read by the general parser");
    assert.ok(
      parsed.some((e, i) => wanted(i) && Number.isNaN(e.timestamp)),
      "a wanted line has a NaN time",
    );
    const timeOf = (i: number) => entryTimeMs(parsed[i]!.timestamp);
    // An instant with a NaN time after it, in the same chunk: that line is not kept either.
    let instantAt = lines.length - 300 + Math.floor(r() * 200);
    while (Number.isNaN(timeOf(instantAt))) instantAt--;
    const afterInstant = parsed.findIndex((_, i) => timeOf(i) > timeOf(instantAt));
    assert.ok(
      parsed.slice(afterInstant).some((e) => Number.isNaN(e.timestamp)),
      "a line with a NaN time after the instant",
    );
    const cases: [cut: Cut, maxChunk: number, expectedLines: number][] = [
      [{ atMs: Number.MAX_SAFE_INTEGER }, 40, lines.length],
      ...[0, 1 + Math.floor(r() * 1400), lines.length - 1].map((seq): [Cut, number, number] => [
        { atMs: Number.MAX_SAFE_INTEGER, run: RUN, seq },
        40,
        seq + 1,
      ]),
      [{ atMs: Number.MAX_SAFE_INTEGER, run: RUN, seq: generalOnly - 1 }, lines.length, generalOnly],
      // An instant: every line up to the first one after it.
      [{ atMs: timeOf(instantAt) }, lines.length, afterInstant],
    ];
    for (const [cut, maxChunk, expectedLines] of cases) {
      const at = JSON.stringify(cut);
      const { kept, intents, keptLines, cutter } = cutInChunks(r, lines, cut, maxChunk);
      assert.equal(keptLines, expectedLines, `lines kept, cut ${at}`);
      const upTo = parsed.slice(0, keptLines);
      const expected = upTo.filter((e) => wants(e.decision_type, e.committed));
      assert.deepEqual(kept as unknown as JsonValue, expected as unknown as JsonValue, `entries, cut ${at}`);
      assert.deepEqual(
        intents,
        upTo.filter((e) => !e.committed).map((e) => ({ seq: e.seq, entry_hash: e.entry_hash })),
        `intents, cut ${at}`,
      );
      const last = upTo[upTo.length - 1]!;
      assert.deepEqual(cutter.position, {
        length: Buffer.byteLength(lines.slice(0, keptLines).join("")),
        tail_sha256: createHash("sha256")
          .update(lines[keptLines - 1]!)
          .digest("hex"),
        seq: last.seq,
        entry_hash: last.entry_hash,
      });
      const finite = upTo.map((e) => entryTimeMs(e.timestamp)).filter((t) => t > 0);
      assert.equal(cutter.lastTime, finite[finite.length - 1], `last time, cut ${at}`);
      if (cut.seq !== undefined) assert.equal(cutter.targetTime, timeOf(cut.seq), `target time, cut ${at}`);
    }
  }));
