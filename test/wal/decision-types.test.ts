/**
 * readWalEntries with `decisionTypes`: exactly the entries of those types, whatever form their
 * lines take, whether the chain is verified or the other lines are skipped unparsed.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { GENESIS_HASH, buildEntryWithLine } from "../../src/wal/entry.js";
import { WalReadError, readWalEntries, type ReadOptions } from "../../src/wal/reader.js";
import { withSeed } from "../helpers.js";
import { scratchWorkspace } from "./support/wal-helpers.js";

const TYPES = [
  "task_claimed",
  "task_merged",
  "task_completed",
  "agent_spawned",
  "t\u00e5sk_claimed",
  'say "hi"',
];

/**
 * A wanted type's name escaped as Python's json.dumps never writes it but any JSON reader reads
 * it: the same entry, in a line the chain check refuses (its bytes are not the ones hashed) and
 * an unverified read hands out; it holds no `"task_claimed"`.
 */
const escapedFirstLetter = (line: string, type: string): string =>
  line.replace(
    `"decision_type":${JSON.stringify(type)}`,
    `"decision_type":"\\u0074${JSON.stringify(type).slice(2)}`,
  );

function randomWal(r: () => number, n: number, escape: boolean): string[] {
  const lines: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 0; seq < n; seq++) {
    const type = TYPES[Math.floor(r() * TYPES.length)]!;
    // Other entries mention the wanted names too: the bytes match, the type does not.
    const note = r() < 0.3 ? TYPES[Math.floor(r() * TYPES.length)]! : `n${seq}`;
    const { entry, line } = buildEntryWithLine(
      { decision_type: type, inputs: { task_id: `T-${seq}`, note }, committed: r() < 0.5 },
      seq,
      prev,
      1795744701.25 + seq,
    );
    prev = entry.entry_hash;
    const text = line.trimEnd();
    lines.push(escape && type.startsWith("t") && r() < 0.2 ? escapedFirstLetter(text, type) : text);
  }
  return lines;
}

async function seqsOf(file: string, opts: ReadOptions): Promise<number[]> {
  const seqs: number[] = [];
  for await (const { entry } of readWalEntries(file, opts)) seqs.push(entry.seq);
  return seqs;
}

const WANTED = [["task_claimed"], ["task_merged", "t\u00e5sk_claimed"], ['say "hi"'], []];

async function typesOf(file: string, verify: boolean): Promise<{ seq: number; type: string }[]> {
  const all: { seq: number; type: string }[] = [];
  for await (const { entry } of readWalEntries(file, { verify }))
    all.push({ seq: entry.seq, type: entry.decision_type });
  return all;
}

test("decisionTypes hands out exactly the entries of those types, verified or not", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await withSeed("DECISION_TYPES_SEED", async (r) => {
      const file = ws.walFile("run-types");
      const lines = randomWal(r, 3000, false);
      await writeFile(file, lines.join("\n") + "\n");
      const all = await typesOf(file, true);
      assert.equal(all.length, lines.length);
      for (const wanted of WANTED) {
        const expected = all.filter((e) => wanted.includes(e.type)).map((e) => e.seq);
        assert.deepEqual(await seqsOf(file, { decisionTypes: wanted }), expected, `verified, ${wanted}`);
        assert.deepEqual(
          await seqsOf(file, { verify: false, decisionTypes: wanted }),
          expected,
          `unverified, ${wanted}`,
        );
      }

      // Lines in other forms than the canonical one: an unverified read still finds every entry.
      const escaped = randomWal(r, 3000, true);
      assert.ok(
        escaped.some((l) => l.includes("\\u0074ask_claimed")),
        "some wanted lines are escaped",
      );
      await writeFile(file, escaped.join("\n") + "\n");
      const parsed = await typesOf(file, false);
      assert.equal(parsed.length, escaped.length);
      for (const wanted of WANTED) {
        const expected = parsed.filter((e) => wanted.includes(e.type)).map((e) => e.seq);
        assert.deepEqual(
          await seqsOf(file, { verify: false, decisionTypes: wanted }),
          expected,
          `unverified, escaped, ${wanted}`,
        );
      }
    });
  } finally {
    await cleanup();
  }
});

test("unverified and filtered, a line that cannot hold a wanted type is not parsed at all", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const lines = randomWal(() => 0.1, 20, false);
    const file = ws.walFile("run-garbage");
    await writeFile(file, [...lines.slice(0, 10), "not json", ...lines.slice(10)].join("\n") + "\n");
    const want = { verify: false, decisionTypes: ["task_claimed"] } as const;
    assert.equal((await seqsOf(file, want)).length, 20, "the garbage line is skipped");
    // A line that mentions the type is parsed, and its damage ends the reading as without a filter.
    await writeFile(
      file,
      [...lines.slice(0, 10), 'not json "task_claimed"', ...lines.slice(10)].join("\n") + "\n",
    );
    await assert.rejects(() => seqsOf(file, want), WalReadError);
    await assert.rejects(() => seqsOf(file, { verify: false }), WalReadError);
  } finally {
    await cleanup();
  }
});
