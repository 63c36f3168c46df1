/**
 * The entries the readers hand out are made in the young generation even after the first ones
 * were held in a batch across young collections: V8 would otherwise make every later entry old
 * (see walEntry), where they wait for a full collection.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const module = (rel: string) => JSON.stringify(fileURLToPath(new URL(rel, import.meta.url)));

// %InYoungGeneration needs --allow-natives-syntax, which only a child process can have.
const CHILD = `
import { GENESIS_HASH, buildEntryWithLine, toWalEntry } from ${module("../../src/wal/entry.js")};
import { readCanonicalLine } from ${module("../../src/wal/canonical-line.js")};
import { entryOfConfirmedLine } from ${module("../../src/wal/confirmed-entry.js")};
import { parseJson } from ${module("../../src/json/canonical.js")};

const lines = [];
let prev = GENESIS_HASH;
for (let i = 0; i < 64; i++) {
  const record = { decision_type: "task_claimed", inputs: { task_id: "T-" + i, attempt: 1 }, committed: true };
  const { entry, line } = buildEntryWithLine(record, i, prev, 1795744701.5 + i);
  prev = entry.entry_hash;
  lines.push(Buffer.from(line));
}
const readers = {
  confirmed(b) {
    if (readCanonicalLine(b, 0, b.length) < 0) throw new Error("line not confirmed");
    return entryOfConfirmedLine(b);
  },
  parsed: (b) => toWalEntry(parseJson(b.toString("utf8", 0, b.length - 1))),
};
const young = {};
for (const [name, read] of Object.entries(readers)) {
  // A batch held whole while young collections run (new arrays fill the young generation)...
  let batch = [];
  for (let i = 0; i < 5000; i++) {
    batch.push(read(lines[i % 64]));
    if (i % 500 === 0) new Array(100000).fill(0);
  }
  batch = undefined;
  // ...then entries made and dropped one by one, as a reader makes them.
  const recent = new Array(64);
  for (let i = 0; i < 200000; i++) recent[i & 63] = read(lines[i & 63]);
  young[name] = %InYoungGeneration(read(lines[0]));
}
console.log(JSON.stringify(young));
`;

test("entries read after a batch held across young collections are still made young", () => {
  const out = execFileSync(
    process.execPath,
    ["--allow-natives-syntax", "--max-semi-space-size=2", "--input-type=module", "-e", CHILD],
    { encoding: "utf8" },
  );
  assert.deepEqual(JSON.parse(out), { confirmed: true, parsed: true });
});
