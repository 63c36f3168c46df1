/**
 * readWalSuffix (what loadState reads a run's WAL with) reads on the scanner of `wal verify`;
 * its verdicts must stay those of checkLine on each decoded line. The oracle here is that rule
 * written plainly: split the bytes at newlines, decode as UTF-8, skip empty lines, checkLine each
 * one, then its seq and its link. The reads are of a run not closed (a torn-tail callback is
 * given), so bad lines with no line after them that checkLine accepts are a torn tail, whether the
 * first of them ends in a newline or not (docs/wal.md).
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { readWalSuffix, WalSuffixError } from "../../src/checkpoint/wal-position.js";
import { parseJson, type JsonValue } from "../../src/json/canonical.js";
import {
  GENESIS_HASH,
  buildEntryWithLine,
  checkLine,
  hashOfParsedEntry,
  toWalEntry,
  type WalEntry,
} from "../../src/wal/entry.js";
import { scratchDir, withSeed } from "../helpers.js";
import { EDITS, randomLines } from "../wal/support/random-lines.js";

interface Outcome {
  entries: WalEntry[];
  thrown?: string;
  warnings: string[];
}

interface Start {
  offset: number;
  prevHash: string;
  nextSeq: number;
}

/** Whether a line from `pos` on is one that checkLine accepts. */
function validLineFrom(bytes: Buffer, pos: number): boolean {
  while (pos < bytes.length) {
    let nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) nl = bytes.length;
    const text = bytes.toString("utf8", pos, nl);
    pos = nl + 1;
    if (text !== "" && checkLine(text).ok) return true;
  }
  return false;
}

function oracle(file: string, bytes: Buffer, start: Start): Outcome {
  const out: Outcome = { entries: [], warnings: [] };
  let prevHash = start.prevHash;
  let nextSeq = start.nextSeq;
  let lineNo = start.nextSeq;
  let pos = start.offset;
  while (pos < bytes.length) {
    let nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) nl = bytes.length;
    const text = bytes.toString("utf8", pos, nl);
    pos = nl + 1;
    lineNo++;
    if (text === "") continue;
    const check = checkLine(text);
    const fail = (seq: number, message: string) =>
      (out.thrown = new WalSuffixError(file, lineNo, seq, message).message);
    if (!check.ok) {
      if (!validLineFrom(bytes, pos)) {
        out.warnings.push(`wal ${file}: torn last line after seq ${nextSeq - 1} (${check.message}); ignored`);
        return out;
      }
      fail(nextSeq, check.message);
      return out;
    }
    const e = check.entry;
    if (e.seq !== nextSeq) return (fail(e.seq, `expected seq ${nextSeq}`), out);
    if (e.prev_hash !== prevHash) return (fail(e.seq, "prev_hash does not link to the previous entry"), out);
    prevHash = e.entry_hash;
    nextSeq++;
    out.entries.push(e);
  }
  return out;
}

async function readSuffix(file: string, start: Start): Promise<Outcome> {
  const out: Outcome = { entries: [], warnings: [] };
  try {
    for await (const e of readWalSuffix(file, start, (m) => out.warnings.push(m))) out.entries.push(e);
  } catch (err) {
    if (!(err instanceof WalSuffixError)) throw err;
    out.thrown = err.message;
  }
  return out;
}

/** Damage that only the byte reader could see differently: empty lines, bytes that are not UTF-8. */
const BYTE_DAMAGE: Array<(line: Buffer) => Buffer> = [
  (l) => Buffer.concat([l, Buffer.from("\n")]), // an empty line after it
  (l) => Buffer.concat([l.subarray(0, 30), Buffer.from([0xff, 0xfe]), l.subarray(30)]),
  (l) => Buffer.concat([l.subarray(0, l.length - 70), Buffer.from([0xc3]), l.subarray(l.length - 70)]),
  (l) => Buffer.from(l.toString("latin1").replace('"actor":"', '"actor":"\u00e9'), "utf8"),
  (l) => l.subarray(0, Math.floor(l.length / 2)),
];

test("readWalSuffix: the entries, the error and the torn-tail warning of checkLine on each line", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-suffix-");
  try {
    await withSeed("SUFFIX_SEED", async (r) => {
      let yielded = 0;
      let thrown = 0;
      let torn = 0;
      for (let round = 0; round < 40; round++) {
        const lines: Buffer[] = randomLines(r, 300, round % 2 === 0 ? 0 : 0.05).map((l) =>
          Buffer.from(l, "utf8"),
        );
        // A break late in the file, so most of it streams first (or none).
        const k = 150 + Math.floor(r() * 149);
        if (round % 5 === 1) lines[k] = BYTE_DAMAGE[Math.floor(r() * BYTE_DAMAGE.length)](lines[k]);
        if (round % 5 === 2) lines.splice(k, 1);
        if (round % 5 === 3)
          lines[k] = Buffer.from(EDITS[Math.floor(r() * EDITS.length)](lines[k].toString(), r));
        const tail = round % 4;
        let bytes = Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")]));
        if (tail === 1) bytes = bytes.subarray(0, bytes.length - 1); // a whole last line, no newline
        if (tail === 2) bytes = bytes.subarray(0, bytes.length - 1 - Math.floor(r() * 100)); // torn
        if (tail === 3) bytes = Buffer.concat([bytes, Buffer.from("\n\n")]);
        const file = `${dir}/run-s${round}.wal.jsonl`;
        await writeFile(file, bytes);
        // From genesis, or after an entry the oracle accepted (what a checkpoint points at).
        let start: Start = { offset: 0, prevHash: GENESIS_HASH, nextSeq: 0 };
        const fromStart = oracle(file, bytes, start);
        if (round % 3 === 1 && fromStart.entries.length > 10) {
          const at = Math.floor(r() * (fromStart.entries.length - 1));
          let offset = 0;
          for (let i = 0; i <= at; i++) offset = bytes.indexOf(0x0a, offset) + 1;
          const e = fromStart.entries[at];
          start = { offset, prevHash: e.entry_hash, nextSeq: e.seq + 1 };
        }
        const want = start.offset === 0 ? fromStart : oracle(file, bytes, start);
        const got = await readSuffix(file, start);
        assert.deepEqual(got, want, `round ${round}, from offset ${start.offset}`);
        yielded += got.entries.length;
        thrown += got.thrown ? 1 : 0;
        torn += got.warnings.length;
      }
      assert.ok(
        yielded > 3000 && thrown > 5 && torn > 2,
        `${yielded} entries, ${thrown} thrown, ${torn} torn`,
      );
    });
  } finally {
    await cleanup();
  }
});

test("readWalSuffix: index keys out of order and a payload the native parser cannot hold", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-suffix-");
  try {
    // Python writes `{"b":1,"1":2}` in that order; a parsed JS object lists "1" first.
    const written = buildEntryWithLine(
      { decision_type: "x", inputs: { b: 1 }, committed: true },
      0,
      GENESIS_HASH,
      1.5,
    )
      .line.trimEnd()
      .replace('"inputs":{"b":1}', '"inputs":{"b":1,"1":2,"big":18446744073709551617,"f":3.0}');
    const raw = parseJson(written) as Record<string, JsonValue>;
    const line = written.replace(/"entry_hash":"\w+"/, `"entry_hash":"${hashOfParsedEntry(raw)}"`);
    const file = `${dir}/run-k.wal.jsonl`;
    await writeFile(file, line + "\n");
    const got = await readSuffix(file, { offset: 0, prevHash: GENESIS_HASH, nextSeq: 0 });
    assert.deepEqual(got, {
      entries: [toWalEntry(parseJson(line) as Record<string, JsonValue>)],
      warnings: [],
    });
  } finally {
    await cleanup();
  }
});
