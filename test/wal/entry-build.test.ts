/**
 * The writer's entry serializer (each payload serialized once for its hash and its line) against
 * the generic one on seeded random records: same line bytes, same hash, and the lossless parser
 * accepts every line as exact.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { PyFloat, canonicalJson } from "../../src/json/canonical.js";
import { buildEntryWithLine, checkLine, entryLine, sha256Hex, type WalEntry } from "../../src/wal/entry.js";
import { withSeed } from "../helpers.js";
import { randomNumber, randomObject, randomString } from "../json/support/random-json.js";

/** The hash as the Python reference defines it, through the generic serializer. */
function genericHash(e: WalEntry): string {
  const { entry_hash: _hash, ...body } = e;
  const ts = Number.isInteger(e.timestamp) ? new PyFloat(e.timestamp) : e.timestamp;
  return sha256Hex(canonicalJson({ ...body, timestamp: ts }));
}

function randomTimestamp(r: () => number): number {
  const n = randomNumber(r);
  if (typeof n === "number") return n;
  return n instanceof PyFloat ? n.value : 1795744701;
}

test("buildEntryWithLine gives the generic serializer's line and hash on seeded random records", async () => {
  await withSeed("ENTRY_BUILD_SEED", async (r) => {
    let prev = "0".repeat(64);
    for (let seq = 0; seq < 2000; seq++) {
      const record = {
        decision_type: randomString(r, 8) || "t",
        inputs: randomObject(r),
        output: r() < 0.3 ? undefined : randomObject(r),
        actor: r() < 0.5 ? undefined : randomString(r, 8),
        committed: r() < 0.5,
      };
      const ts = randomTimestamp(r);
      const { entry, line } = buildEntryWithLine(record, seq, prev, ts);
      const what = `record ${seq}: ${line}`;
      assert.equal(line, entryLine(entry), what);
      assert.equal(entry.entry_hash, genericHash(entry), what);
      const check = checkLine(line.slice(0, -1));
      assert.ok(check.ok, `${what}: ${check.ok ? "" : check.message}`);
      prev = entry.entry_hash;
    }
  });
});
