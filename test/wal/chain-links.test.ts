/**
 * linkedLines: a batch of WAL lines read by their frames (seq, prev_hash, entry_hash) only, as the
 * archiver ships them; any line out of frame, order or link gives undefined (the caller then
 * checks line by line).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { linkedLines } from "../../src/wal/chain-links.js";
import { GENESIS_HASH, buildEntryWithLine } from "../../src/wal/entry.js";

/** `n` chained lines from the genesis, as the writer prints them. */
function chainOf(n: number): { lines: string[]; hashes: string[] } {
  const lines: string[] = [];
  const hashes: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 0; seq < n; seq++) {
    const record = { decision_type: "task_claimed", inputs: { task_id: `T-${seq}` }, committed: true };
    const { entry, line } = buildEntryWithLine(record, seq, prev, 1_700_000_000 + seq);
    lines.push(line);
    hashes.push(entry.entry_hash);
    prev = entry.entry_hash;
  }
  return { lines, hashes };
}

const bytes = (lines: string[]): Buffer => Buffer.from(lines.join(""), "utf8");

describe("wal: linkedLines reads a batch's chain from its frames", () => {
  const { lines, hashes } = chainOf(12);

  it("gives the first and last seq, the last hash and where the last line starts", () => {
    const r = linkedLines(bytes(lines.slice(4)), { seq: 3, hash: hashes[3]! });
    assert.deepEqual(r, {
      count: 8,
      firstSeq: 4,
      lastSeq: 11,
      lastHash: hashes[11],
      lastStart: Buffer.byteLength(lines.slice(4, 11).join("")),
    });
    assert.equal(linkedLines(bytes(lines.slice(0, 1)), { seq: -1, hash: GENESIS_HASH })?.lastHash, hashes[0]);
  });

  it("refuses a batch that does not follow the given entry", () => {
    assert.equal(linkedLines(bytes(lines.slice(4)), { seq: 2, hash: hashes[3]! }), undefined);
    assert.equal(linkedLines(bytes(lines.slice(4)), { seq: 3, hash: hashes[2]! }), undefined);
  });

  const damages: [string, (l: string) => string][] = [
    ["a seq skipped", (l) => l.replace('{"seq":6,', '{"seq":7,')],
    ["a seq with a leading zero", (l) => l.replace('{"seq":6,', '{"seq":06,')],
    ["a prev_hash that does not link", (l) => l.replace(hashes[5]!, hashes[4]!)],
    ["a line cut short", (l) => l.slice(0, 120) + "\n"],
    ["no entry_hash at its end", (l) => l.replace(/,"entry_hash":"[0-9a-f]{64}"\}/, "}")],
    ["another field order", (l) => l.replace('{"seq":6,', '{ "seq":6,')],
  ];
  for (const [what, damage] of damages) {
    it(`refuses a batch with ${what}`, () => {
      const changed = damage(lines[6]!);
      assert.notEqual(changed, lines[6]);
      const batch = [...lines.slice(0, 6), changed, ...lines.slice(7)];
      assert.equal(linkedLines(bytes(batch), { seq: -1, hash: GENESIS_HASH }), undefined);
    });
  }

  it("does not re-hash: a line altered inside its frame still links (restore and check prove hashes)", () => {
    const altered = lines[6]!.replace('"T-6"', '"T-9"');
    assert.notEqual(altered, lines[6]);
    const r = linkedLines(bytes([...lines.slice(0, 6), altered, ...lines.slice(7)]), {
      seq: -1,
      hash: GENESIS_HASH,
    });
    assert.equal(r?.lastSeq, 11);
  });
});
