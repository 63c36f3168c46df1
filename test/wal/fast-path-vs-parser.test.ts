/**
 * The byte-level fast path against the lossless parser on seeded random entries: the fast path
 * may only confirm a line the parser accepts with the same hash, and a whole file's verdict is
 * the one of the parser-only state machine, whichever path or thread count checks it.
 */
import assert from "node:assert/strict";
import { isAscii } from "node:buffer";
import { writeFile } from "node:fs/promises";
import { test } from "node:test";
import { type JsonValue } from "../../src/json/canonical.js";
import { canonicalJson, parseJson, pyFloatRepr } from "../../src/json/canonical.js";
import { scan } from "../json/support/scan-text.js";
import { readCanonicalLine } from "../../src/wal/canonical-line.js";
import { ChainVerifier } from "../../src/wal/chain.js";
import { GENESIS_HASH, buildEntryWithLine, checkLine, sha256Hex, toWalEntry } from "../../src/wal/entry.js";
import { scannedNumbers } from "../../src/json/canonical-scan.js";
import { EntrySink } from "../../src/wal/entry-sink.js";
import { WalReadError, readWalEntries, verifyWal, type ReadEntry } from "../../src/wal/reader.js";
import { withSeed } from "../helpers.js";
import { scratchWorkspace } from "./support/wal-helpers.js";
import { EDITS, randomLines, randomObject } from "./support/random-lines.js";

function confirms(line: string): boolean {
  const bytes = Buffer.from(line, "utf8");
  return readCanonicalLine(bytes, 0, bytes.length) === bytes.length;
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
  const entries: ReadEntry[] = [];
  lines.forEach((l, i) => {
    sink.line(l, i + 1, tornTail && i === lines.length - 1, isAscii(Buffer.from(l)));
    if (sink.ready) entries.push(sink.ready);
    sink.ready = undefined;
  });
  const e = sink.pendingError;
  const thrown = e && (sink.moreAfterError || !tolerate) ? new WalReadError(e).message : undefined;
  return { entries, thrown };
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
      // What the rounds guarantee whatever the seed: the five from seq 0 stream the 200 lines
      // before their break at least; a round from a later seq may stream none.
      assert.ok(streamed >= 1000 && refused > 1, `${streamed} entries streamed, ${refused} WALs refused`);
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
