import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { readCanonicalLine } from "../../src/wal/canonical-line.js";
import { canonicalJson, orderedJson, type JsonValue } from "../../src/json/canonical.js";
import { GENESIS_HASH, buildEntryWithLine, checkLine, sha256Hex } from "../../src/wal/entry.js";
import { verifyWal } from "../../src/wal/reader.js";
import { WalWriter } from "../../src/wal/writer.js";
import { lines, record, scratchWorkspace } from "./support/wal-helpers.js";

/** Whether the fast path confirms the whole line (canonical, and its entry_hash checks out). */
function confirms(line: string): boolean {
  const bytes = Buffer.from(line, "utf8");
  return readCanonicalLine(bytes, 0, bytes.length) === bytes.length;
}

test("every line our writer prints takes the fast path and hashes to its entry_hash", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const w = await WalWriter.open(ws, "run-fast");
    for (let i = 0; i < 50; i++) await w.append(record(i, i % 2 === 0));
    await w.close();
    for (const line of await lines(ws.walFile("run-fast"))) {
      assert.ok(confirms(line), line);
    }
  } finally {
    await cleanup();
  }
});

/**
 * A line edited into a non-canonical form whose entry_hash is forged over the edited text's
 * fields as they stand (what a fast path that trusted the text would compute). The lossless
 * parser hashes the parsed value instead, so the line must fail, through either path.
 */
function forged(edit: (line: string) => string): string {
  const { line } = buildEntryWithLine(
    {
      decision_type: "task_completed",
      inputs: { task_id: "T-1", attempt: 1 },
      output: { cost_usd: 0.5, note: "a/b", big: 1 },
      committed: true,
    },
    0,
    GENESIS_HASH,
    1795744701.5,
  );
  const edited = edit(line.slice(0, line.lastIndexOf(',"entry_hash"')) + "}");
  const obj = edited.slice(0, -1);
  // The body the text would give if taken as written: its fields re-ordered, tokens untouched.
  const fields = new Map<string, string>();
  const re = /"(seq|prev_hash|timestamp|decision_type|inputs|output|actor|committed)":/g;
  const starts = [...obj.matchAll(re)].filter((m) => m.index! === 1 || obj[m.index! - 1] === ",");
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1].index! - 1 : obj.length;
    fields.set(m[1], obj.slice(m.index! + m[0].length, end));
  });
  const body =
    "{" +
    [...fields.keys()]
      .sort()
      .map((k) => `"${k}":${fields.get(k)}`)
      .join(",") +
    "}";
  return `${obj},"entry_hash":"${sha256Hex(body)}"}`;
}

const LOOKALIKES: Array<[why: string, edit: (line: string) => string]> = [
  ["an escaped slash", (l) => l.replace('"a/b"', '"a\\/b"')],
  ["a \\u escape of a printable character", (l) => l.replace('"a/b"', '"\\u0061/b"')],
  ["uppercase hex in an escape", (l) => l.replace('"a/b"', '"\\u00E9"')],
  ["a float with a trailing zero", (l) => l.replace('"cost_usd":0.5', '"cost_usd":0.50')],
  [
    "a float digit beyond double precision",
    (l) => l.replace('"cost_usd":0.5', '"cost_usd":0.50000000000000001'),
  ],
  ["an exponent Python prints positionally", (l) => l.replace('"cost_usd":0.5', '"cost_usd":5e-1')],
  ["an integer -0", (l) => l.replace('"big":1', '"big":-0')],
  ["a raw DEL", (l) => l.replace('"a/b"', '"a\u007fb"')],
  ["a duplicate nested key", (l) => l.replace('"big":1', '"big":1,"big":2')],
  ["whitespace", (l) => l.replace('"big":1', '"big": 1')],
];

test("lines that look canonical but are not fall back to the parser and fail as they do there", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const file = ws.walFile("run-lookalike");
    for (const [why, edit] of LOOKALIKES) {
      const line = forged(edit);
      assert.equal(confirms(line), false, `${why}: refused by the fast path`);
      const general = checkLine(line);
      assert.equal(general.ok, false, `${why}: the parser rejects it`);
      await writeFile(file, line + "\n");
      const seq = await verifyWal(file, "run-lookalike", { workers: 0 });
      const par = await verifyWal(file, "run-lookalike", { workers: 2 });
      assert.equal(seq.ok, false, why);
      assert.equal(seq.errors[0].kind, general.ok ? "" : general.kind, why);
      assert.deepEqual({ ...par, workers: 0 }, seq, why);
    }
  } finally {
    await cleanup();
  }
});

test("non-ASCII and unsorted nested keys: the same verdicts as the parser", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const { line } = buildEntryWithLine(record(7), 0, GENESIS_HASH, 1795744701.25);
    const text = line.trimEnd();
    // Raw UTF-8 where the writer escapes: same value, so the same hash, but not the bytes written.
    const raw = text.replace("\\u00e9", "\u00e9");
    // Nested keys in another order: a line the Python writer can print (insertion order).
    const reordered = text.replace(
      /"inputs":\{"task_id":("[^"]*"),"attempt":1,/,
      '"inputs":{"attempt":1,"task_id":$1,',
    );
    assert.notEqual(raw, text);
    assert.notEqual(reordered, text);
    assert.ok(confirms(reordered), "unsorted nested keys stay on the fast path");
    const file = ws.walFile("run-mixed");
    for (const variant of [text, raw, reordered]) {
      await writeFile(file, variant + "\n");
      const v = await verifyWal(file, "run-mixed", { workers: 0 });
      assert.equal(v.ok, checkLine(variant).ok, variant);
    }
  } finally {
    await cleanup();
  }
});

test("lines whose fields are unsorted objects anywhere take the fast path and hash as the parser does", () => {
  const unsorted = { b: [{ d: 1, c: "x" }], a: { f: null, e: 0.25 } };
  const sorted = { a: 1, b: "two" };
  const cases: Array<Record<string, JsonValue>> = [
    { inputs: unsorted, output: unsorted, actor: "orchestrator", committed: true },
    { inputs: sorted, output: sorted, actor: "orchestrator", committed: false },
    { inputs: unsorted, output: sorted, actor: unsorted, committed: unsorted },
    { inputs: sorted, output: unsorted, actor: sorted, committed: [unsorted, 3] },
    { inputs: {}, output: [], actor: "", committed: null },
  ];
  let prev = GENESIS_HASH;
  cases.forEach((fields, seq) => {
    // As the Python original writes a line: fields in line order as given, the hash over the
    // canonical (sorted) body.
    const entry: Record<string, JsonValue> = {
      seq,
      prev_hash: prev,
      timestamp: 1795744701.5 + seq,
      decision_type: "task_completed",
      ...fields,
    };
    const hash = sha256Hex(canonicalJson(entry));
    const line = orderedJson({ ...entry, entry_hash: hash });
    assert.ok(confirms(line), line);
    const check = checkLine(line);
    assert.ok(check.ok && check.entry.entry_hash === hash, line);
    const edited = line.includes('"e":0.25')
      ? line.replace('"e":0.25', '"e":0.5')
      : line.replace("task_completed", "task_complete_");
    assert.notEqual(edited, line);
    assert.equal(confirms(edited), false, "an edit changes the hash");
    prev = hash;
  });
});
