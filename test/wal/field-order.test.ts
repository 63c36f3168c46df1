/**
 * A line is byte-exact when the parsed value written back in field order gives its bytes
 * (docs/wal.md). Re-serialising a line with its fields in another order, or with a key repeated,
 * keeps the hashed value, so only that rule tells it from the line written: every chain check
 * must call it a break. A nested object written in another key order is a value the writers can
 * print (they keep the caller's insertion order): exact.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readWalSuffix, WalSuffixError } from "../../src/checkpoint/wal-position.js";
import { verifyPrefix } from "../../src/wal/continuation.js";
import { GENESIS_HASH, buildEntryWithLine, checkLine } from "../../src/wal/entry.js";
import { WalReadError, readWalEntries, verifyWal } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

function lines(): string[] {
  let prev = GENESIS_HASH;
  const out: string[] = [];
  for (let seq = 0; seq < 3; seq++) {
    const record = {
      decision_type: "task_completed",
      inputs: { task_id: `T-${seq}`, attempt: 1 },
      output: { cost_usd: 0.25 },
      committed: true,
    };
    const { entry, line } = buildEntryWithLine(record, seq, prev, 1795744701.5 + seq);
    out.push(line.trimEnd());
    prev = entry.entry_hash;
  }
  return out;
}

/** The fields of a line as written, in another order (Python's json.dumps of a reordered dict). */
function reorderFields(line: string, order: (keys: string[]) => string[]): string {
  const fields = new Map<string, string>();
  const re = /[{,]"(seq|prev_hash|timestamp|decision_type|inputs|output|actor|committed|entry_hash)":/g;
  const starts = [...line.matchAll(re)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1]!.index : line.length - 1;
    fields.set(m[1]!, line.slice(m.index + m[0].length, end));
  });
  return `{${order([...fields.keys()])
    .map((k) => `"${k}":${fields.get(k)}`)
    .join(",")}}`;
}

const NOT_WRITTEN: Array<[why: string, edit: (line: string) => string]> = [
  ["the fields in reverse order", (l) => reorderFields(l, (k) => k.reverse())],
  ["entry_hash first", (l) => reorderFields(l, (k) => [k.at(-1)!, ...k.slice(0, -1)])],
  ["seq and prev_hash swapped", (l) => reorderFields(l, (k) => [k[1]!, k[0]!, ...k.slice(2)])],
  ["a field repeated", (l) => l.replace('"committed":true', '"committed":true,"committed":true')],
  ["a nested key repeated", (l) => l.replace('"attempt":1', '"attempt":1,"attempt":1')],
];

const WRITTEN: Array<[why: string, edit: (line: string) => string]> = [
  ["as written", (l) => l],
  [
    "nested keys in another order",
    (l) => l.replace(/\{"task_id":("T-\d")(,"attempt":1)\}/, '{"attempt":1,"task_id":$1}'),
  ],
];

async function verdicts(file: string, text: string[]) {
  await writeFile(file, text.join("\n") + "\n");
  const seq = await verifyWal(file, "run-order", { workers: 0 });
  const par = await verifyWal(file, "run-order", { workers: 2 });
  assert.deepEqual({ ...par, workers: 0 }, seq);
  let read: string | undefined;
  try {
    for await (const _ of readWalEntries(file, { runId: "run-order" }));
  } catch (err) {
    if (!(err instanceof WalReadError)) throw err;
    read = err.message;
  }
  let suffix: string | undefined;
  try {
    for await (const _ of readWalSuffix(file, { offset: 0, prevHash: GENESIS_HASH, nextSeq: 0 }));
  } catch (err) {
    if (!(err instanceof WalSuffixError)) throw err;
    suffix = err.message;
  }
  const prefix = verifyPrefix("run-order", { seq: -1, hash: GENESIS_HASH }, text);
  return { verify: seq, read, suffix, prefixValid: prefix.valid, line: checkLine(text[1]!) };
}

test("fields reordered or a key repeated: a break in every chain check; nested keys reordered: exact", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const file = path.join(dir, "run-order.wal.jsonl");
    const base = lines();
    for (const [why, edit] of NOT_WRITTEN) {
      const text = [base[0]!, edit(base[1]!), base[2]!];
      assert.notEqual(text[1], base[1], why);
      const v = await verdicts(file, text);
      assert.equal(v.verify.ok, false, why);
      assert.equal(v.verify.errors[0]?.line, 2, why);
      assert.equal(v.verify.errors[0]?.kind, "hash_mismatch", why);
      assert.match(v.verify.errors[0]!.message, /line bytes differ/, why);
      assert.equal(v.line.ok, false, why);
      assert.match(v.read ?? "", /line 2/, why);
      assert.match(v.suffix ?? "", /line 2/, why);
      assert.equal(v.prefixValid, 1, why);
    }
    for (const [why, edit] of WRITTEN) {
      const text = [base[0]!, edit(base[1]!), base[2]!];
      const v = await verdicts(file, text);
      assert.equal(v.verify.ok, true, `${why}: ${JSON.stringify(v.verify.errors)}`);
      assert.equal(v.line.ok, true, why);
      assert.equal(v.read, undefined, why);
      assert.equal(v.suffix, undefined, why);
      assert.equal(v.prefixValid, 3, why);
    }
  } finally {
    await cleanup();
  }
});

test("wal verify: a line with its fields reordered is a break (exit 1) naming its line", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const base = lines();
    base[1] = reorderFields(base[1]!, (k) => k.reverse());
    await writeFile(ws.walFile("run-order"), base.join("\n") + "\n");
    const r = await runCli(["--sdd", ws.root, "wal", "verify"], {
      env: { XDG_STATE_HOME: path.join(dir, "x") },
    });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /run-order: seq 1, line 2: hash_mismatch: line bytes differ/);
  } finally {
    await cleanup();
  }
});
