/**
 * The entries the readers build from a confirmed line's tokens against toWalEntry of the parsed
 * line: timestamps of every magnitude (the digits fast path and Number() alike), -0.0, integral
 * floats, and timestamps that are not numbers at all.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { parseJson, pyFloatRepr, type JsonValue } from "../../src/json/canonical.js";
import { GENESIS_HASH, buildEntryWithLine, hashOfParsedEntry, toWalEntry } from "../../src/wal/entry.js";
import { readWalEntries } from "../../src/wal/reader.js";
import { scratchDir, withSeed } from "../helpers.js";

function randomTimestamp(r: () => number): number {
  switch (Math.floor(r() * 5)) {
    case 0:
      return 1795744701 + Math.floor(r() * 1e6) / 1e6; // 16 digits, as time.time() prints
    case 1:
      return (r() - 0.5) * 10 ** Math.floor(r() * 44 - 22); // any magnitude, either sign
    case 2:
      return Math.floor(r() * 1e6); // integral: printed with `.0`
    case 3:
      return [0, -0, 2 ** 53, 2 ** 53 + 2, 9007199254740991, 0.1, 1e-4, 1e16, 5e-324][Math.floor(r() * 9)];
    default:
      return r() * 2 ** 53; // 16 and 17 digits around the edge of the exact range
  }
}

/** A line with its timestamp token replaced by `token`, re-hashed as the Python verifier would. */
function withTimestampToken(line: string, token: string): string {
  const edited = line.replace(/"timestamp":[^,]+,/, `"timestamp":${token},`);
  const raw = parseJson(edited) as Record<string, JsonValue>;
  return edited.replace(/"entry_hash":"\w+"/, `"entry_hash":"${hashOfParsedEntry(raw)}"`);
}

test("entries built from confirmed tokens equal toWalEntry of the parsed line", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-confirmed-");
  try {
    await withSeed("CONFIRMED_SEED", async (r) => {
      const lines: string[] = [];
      let prev = GENESIS_HASH;
      const odd = ['"1795744701.5"', "null", "true", "[7]", '{"a":1}', "17957447011234567890"];
      for (let seq = 0; seq < 4000; seq++) {
        const record = { decision_type: "t", inputs: { n: seq }, committed: seq % 2 === 0 };
        let { line } = buildEntryWithLine(record, seq, prev, randomTimestamp(r));
        line = line.trimEnd();
        if (r() < 0.02) line = withTimestampToken(line, odd[Math.floor(r() * odd.length)]);
        prev = (parseJson(line) as Record<string, JsonValue>).entry_hash as string;
        lines.push(line);
      }
      const file = `${dir}/run-c.wal.jsonl`;
      await writeFile(file, lines.join("\n") + "\n");
      let i = 0;
      for await (const { entry } of readWalEntries(file)) {
        const want = toWalEntry(parseJson(lines[i]) as Record<string, JsonValue>);
        assert.deepEqual(entry, want, lines[i]);
        assert.ok(Object.is(entry.timestamp, want.timestamp), `${lines[i]}: ${pyFloatRepr(entry.timestamp)}`);
        i++;
      }
      assert.equal(i, lines.length);
    });
  } finally {
    await cleanup();
  }
});
