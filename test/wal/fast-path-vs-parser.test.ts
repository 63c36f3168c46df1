/**
 * The byte-level fast path against the lossless parser on seeded random entries: the fast path
 * may only confirm a line the parser accepts with the same hash, and a whole file's verdict is
 * the one of the parser-only state machine, whichever path or thread count checks it.
 */
import assert from "node:assert/strict";
import { isAscii } from "node:buffer";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { PyFloat, type JsonValue } from "../../src/json/canonical.js";
import { canonicalJson, parseJson, pyFloatRepr } from "../../src/json/canonical.js";
import { scan } from "../json/support/scan-text.js";
import { readCanonicalLine } from "../../src/wal/canonical-line.js";
import { ChainVerifier } from "../../src/wal/chain.js";
import {
  GENESIS_HASH,
  buildEntryWithLine,
  checkLine,
  hashOfParsedEntry,
  sha256Hex,
  toWalEntry,
} from "../../src/wal/entry.js";
import { checkLineFast } from "../../src/wal/line-check.js";
import { scannedNumbers } from "../../src/json/canonical-scan.js";
import { EntrySink } from "../../src/wal/entry-sink.js";
import { WalReadError, readWalEntries, verifyWal, type ReadEntry } from "../../src/wal/reader.js";
import { withSeed } from "../helpers.js";
import { scratchWorkspace } from "./support/wal-helpers.js";

function confirms(line: string): boolean {
  const bytes = Buffer.from(line, "utf8");
  return readCanonicalLine(bytes, 0, bytes.length) === bytes.length;
}

const TRICKY_FLOATS = [
  1e21,
  1e16,
  1e-5,
  1e-4,
  0.1,
  0.5,
  -0.0,
  5e-324,
  1.7976931348623157e308,
  1 / 3,
  2 ** 53 + 2,
];

function randomFloat(r: () => number): number | PyFloat {
  const pick = Math.floor(r() * 4);
  if (pick === 0) return new PyFloat(TRICKY_FLOATS[Math.floor(r() * TRICKY_FLOATS.length)]);
  if (pick === 1) return new PyFloat(Math.floor(r() * 1000)); // integral: printed with .0
  if (pick === 2) return 1795744701 + Math.floor(r() * 1e6) / 1e6; // a 16-digit timestamp
  return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
}

function randomString(r: () => number): string {
  const chars = [...'ab_Z9 ~/"\\\n\t\u0001\u007f\u00e9\u2028\u{1F680}'];
  let s = Array.from({ length: Math.floor(r() * 6) }, () => chars[Math.floor(r() * chars.length)]).join("");
  if (r() < 0.1) s += "\ud800"; // a lone surrogate
  return s;
}

function randomValue(r: () => number, depth: number): JsonValue {
  switch (Math.floor(r() * (depth > 2 ? 6 : 8))) {
    case 0:
      return r() < 0.5 ? null : r() < 0.5;
    case 1:
      return Math.floor((r() - 0.5) * 1e6);
    case 2:
      return r() < 0.5 ? 2n ** 64n + BigInt(Math.floor(r() * 1000)) : -(2n ** 70n);
    case 3:
      return randomFloat(r) as JsonValue;
    case 4:
    case 5:
      return randomString(r);
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default:
      return randomObject(r, depth + 1);
  }
}

/** An object whose keys come in random order (the writers keep insertion order). */
function randomObject(r: () => number, depth: number): Record<string, JsonValue> {
  const obj: Record<string, JsonValue> = {};
  for (let i = Math.floor(r() * 5); i > 0; i--) obj[`k${Math.floor(r() * 50)}`] = randomValue(r, depth);
  return obj;
}

/** Edits a written line into a form Python would not write (or would, for unsorted keys). */
const EDITS: Array<(line: string, r: () => number) => string> = [
  (l) => l.replace('"committed":', '"committed": '),
  (l) => l.replace(/"k(\d+)":/, '"\\u006b$1":'),
  (l) => l.replace('"decision_type":"t', '"decision_type":"\\u0074'),
  (l) => l.replace(/(\d)\.(\d+)([,}])/, "$1.$20$3"),
  (l) => l.replace(/(\d)\.0([,}])/, "$1$2"),
  (l) => l.replace(/:(\d+)([,}])/, ":$1.0$2"),
  (l) => l.replace(/:(-?[1-9]\d*)([,}])/, ":$1e0$2"),
  (l) => l.replace(/:-0\.0([,}])/, ":-0$1"),
  (l) => l.replace(/\\u00e9/, "\u00e9"),
  (l) => l.replace(/\\ud83d\\ude80/, "\\uD83D\\uDE80"),
  (l) => l.replace(/\\\//, "/").replace("/", "\\/"),
  (l) => l.replace(/\{"(k\d+)":([^{}[\],]+),"(k\d+)":/, '{"$3":$2,"$1":'),
  (l) => l.replace(/"(k\d+)":([^{}[\],]+)([,}])/, '"$1":$2,"$1":$2$3'),
  (l, r) => l.replace("1795744701.", `1795744701.${Math.floor(r() * 10)}`),
];

/** The entry_hash a fast path trusting the text as written would compute (a forgery). */
function forgeFromText(line: string): string {
  const obj = line.slice(0, line.lastIndexOf(',"entry_hash"'));
  const fields = new Map<string, string>();
  const re = /[{,]"(seq|prev_hash|timestamp|decision_type|inputs|output|actor|committed)":/g;
  const starts = [...obj.matchAll(re)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1].index : obj.length;
    fields.set(m[1], obj.slice(m.index + m[0].length, end));
  });
  const body = `{${[...fields.keys()]
    .sort()
    .map((k) => `"${k}":${fields.get(k)}`)
    .join(",")}}`;
  return `${obj},"entry_hash":"${sha256Hex(body)}"}`;
}

/** `damage` scales how often a line is edited or a link broken (1: often, to test the breaks). */
function randomLines(r: () => number, count: number, damage = 1): string[] {
  const out: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 0; seq < count; seq++) {
    const record = {
      decision_type: r() < 0.5 ? "task_claimed" : "task_completed",
      inputs: randomObject(r, 0),
      output: r() < 0.5 ? {} : randomObject(r, 0),
      committed: r() < 0.5,
    };
    const { entry, line } = buildEntryWithLine(record, seq, prev, 1795744701 + seq * 0.000731);
    let text = line.trimEnd();
    if (r() < 0.4 * damage) {
      const edited = EDITS[Math.floor(r() * EDITS.length)](text, r);
      text = r() < 0.5 ? forgeFromText(edited) : edited;
    }
    out.push(text);
    prev = r() < 1 - 0.03 * damage ? entry.entry_hash : sha256Hex(String(seq)); // now and then a broken link
  }
  return out;
}

test("the fast path confirms only lines the parser accepts, and every line as written by the writers", async () => {
  await withSeed("FASTPATH_SEED", async (r) => {
    let confirmed = 0;
    for (const line of randomLines(r, 3000)) {
      const general = checkLine(line);
      if (confirms(line)) {
        confirmed++;
        assert.ok(general.ok, `confirmed by the fast path, rejected by the parser: ${line}`);
      }
    }
    assert.ok(confirmed > 1000, `the fast path took ${confirmed} lines`);
    for (let seq = 0; seq < 300; seq++) {
      const record = {
        decision_type: "x",
        inputs: randomObject(r, 0),
        output: randomObject(r, 0),
        committed: true,
      };
      const text = buildEntryWithLine(record, seq, GENESIS_HASH, 1795744701.5 + seq).line.trimEnd();
      assert.ok(confirms(text), `a line as the writers print it, refused: ${text}`);
    }
  });
});

test("random WALs: the same verdicts through the fast path (0 and 2 workers) as the parser alone", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await withSeed("FASTPATH_SEED", async (r) => {
      for (let round = 0; round < 6; round++) {
        const lines = randomLines(r, 400);
        const file = ws.walFile(`run-r${round}`);
        const text = lines.join("\n") + (round % 3 === 2 ? "" : "\n");
        await writeFile(file, text);
        // The reference: the exact state machine fed decoded lines, never offered to the fast path.
        const ref = new ChainVerifier(`run-r${round}`, file);
        lines.forEach((l, i) =>
          ref.line(l, i + 1, round % 3 === 2 && i === lines.length - 1, isAscii(Buffer.from(l))),
        );
        ref.result.bytes = Buffer.byteLength(text);
        for (const workers of [0, 2]) {
          const got = await verifyWal(file, `run-r${round}`, { workers });
          assert.deepEqual({ ...got, workers: 0 }, ref.result, `round ${round}, ${workers} workers`);
        }
      }
    });
  } finally {
    await cleanup();
  }
});

test("float tokens of 15 to 17 digits: taken exactly when they are Python's repr of their double", async () => {
  await withSeed("FLOAT_SEED", async (r) => {
    for (let i = 0; i < 20000; i++) {
      const digits = 15 + Math.floor(r() * 3);
      let m = String(1 + Math.floor(r() * 9));
      while (m.length < digits) m += String(Math.floor(r() * 10));
      const point = 1 + Math.floor(r() * (digits - 1));
      const token = (r() < 0.3 ? "-" : "") + m.slice(0, point) + "." + m.slice(point);
      const repr = pyFloatRepr(Number(token));
      assert.equal(scan(token), token === repr ? token : undefined, token);
      assert.equal(canonicalJson(parseJson(token)), repr, token);
    }
  });
});

/** A line with its seq or prev_hash changed and a right entry_hash for its new content. */
function rewritten(line: string, seq: number, prevHash?: string): string {
  const e = toWalEntry(parseJson(line) as Record<string, JsonValue>);
  return buildEntryWithLine(e, seq, prevHash ?? e.prev_hash, e.timestamp).line.trimEnd();
}

/** What readWalEntries yields and throws when every line goes through the parser (no fast path). */
function parserOnly(lines: string[], tornTail: boolean, fromSeq: number, tolerate: boolean) {
  const sink = new EntrySink("run-e", fromSeq, true);
  lines.forEach((l, i) => sink.line(l, i + 1, tornTail && i === lines.length - 1, isAscii(Buffer.from(l))));
  const e = sink.pendingError;
  const thrown = e && (sink.moreAfterError || !tolerate) ? new WalReadError(e).message : undefined;
  return { entries: sink.batch, thrown };
}

test("random WALs: readWalEntries yields the entries and throws the error of the parser alone", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await withSeed("FASTPATH_SEED", async (r) => {
      let streamed = 0;
      let refused = 0;
      for (let round = 0; round < 10; round++) {
        // One break late in the file, so most of it streams first: a missing line, a link or a
        // seq forged with a hash that matches, an edited line; or none.
        const lines = randomLines(r, 400, 0);
        const k = 200 + Math.floor(r() * 199);
        if (round % 4 === 1) lines.splice(k, 1);
        if (round % 4 === 2) lines[k] = rewritten(lines[k], k, sha256Hex("x"));
        if (round % 5 === 4) lines[k] = rewritten(lines[k], k + 7);
        if (round % 4 === 3) lines[k] = EDITS[Math.floor(r() * EDITS.length)](lines[k], r);
        const tornTail = round % 3 === 2;
        const file = ws.walFile("run-e");
        await writeFile(file, lines.join("\n") + (tornTail ? "" : "\n"));
        const fromSeq = round % 2 === 0 ? 0 : Math.floor(r() * 300);
        const tolerate = round % 4 !== 1;
        const want = parserOnly(lines, tornTail, fromSeq, tolerate);
        const got: ReadEntry[] = [];
        let thrown: string | undefined;
        try {
          for await (const item of readWalEntries(file, { fromSeq, tolerateTornTail: tolerate }))
            got.push(item);
        } catch (err) {
          thrown = (err as Error).message;
        }
        assert.deepEqual({ entries: got, thrown }, want, `round ${round}, from seq ${fromSeq}`);
        streamed += got.length;
        refused += thrown ? 1 : 0;
      }
      assert.ok(streamed > 2000 && refused > 1, `${streamed} entries streamed, ${refused} WALs refused`);
    });
  } finally {
    await cleanup();
  }
});

test("a line the fast path confirms parses natively to the parser's value when its numbers allow", async () => {
  await withSeed("FASTPATH_SEED", async (r) => {
    let native = 0;
    for (const line of randomLines(r, 3000)) {
      if (!confirms(line) || !scannedNumbers.jsonParseExact) continue;
      native++;
      assert.deepEqual(JSON.parse(line), parseJson(line), line);
    }
    assert.ok(native > 100, `${native} lines parsed natively`);
  });
});

test("checkLineFast gives checkLine's verdict on every line, index keys out of order included", async () => {
  await withSeed("FASTPATH_SEED", async (r) => {
    for (const line of randomLines(r, 3000)) assert.deepEqual(checkLineFast(line), checkLine(line), line);
  });
  // Python writes `{"b":1,"1":2}` in that order; a parsed JS object lists "1" first.
  const written = buildEntryWithLine(
    { decision_type: "x", inputs: { b: 1 }, committed: true },
    0,
    GENESIS_HASH,
    1.5,
  )
    .line.trimEnd()
    .replace('"inputs":{"b":1}', '"inputs":{"b":1,"1":2}');
  const raw = parseJson(written) as Record<string, JsonValue>;
  const line = written.replace(/"entry_hash":"\w+"/, `"entry_hash":"${hashOfParsedEntry(raw)}"`);
  assert.ok(confirms(line));
  assert.deepEqual(checkLineFast(line), checkLine(line));
});
