import assert from "node:assert/strict";
import { test } from "node:test";
import { canonicalJson, orderedJson, parseJson, type JsonValue } from "../../src/json/canonical.js";
import { scannedNumbers } from "../../src/json/canonical-scan.js";
import { scan } from "./support/scan-text.js";
import { withSeed } from "../helpers.js";

test("text with canonical tokens gives canonicalJson of its parsed value, nested keys re-ordered", () => {
  const texts = [
    '{"task_id":"T-1","attempt":1}',
    '{"b":{"z":[1,{"y":2,"x":3}],"a":null},"a":true,"c":false}',
    '{"cost_usd":0.0123,"ts":1795744701.123456,"tiny":1e-05,"huge":1e+16,"neg":-0.0,"one":1.0}',
    '{"big":18446744073709551616,"neg":-12,"zero":0}',
    '"caf\\u00e9 \\ud83d\\ude80 \\"q\\" \\\\ \\n\\r\\t\\b\\f \\u007f \\u0000"',
    '{"a b":1,"a":2,"a!":3,"":4}',
    "[]",
    "{}",
    '[{"b":1,"a":2},[],{}]',
  ];
  for (const text of texts) assert.equal(scan(text), canonicalJson(parseJson(text)), text);
});

test("text that only looks canonical is refused, so the lossless parser decides", () => {
  const refused: Array<[why: string, text: string]> = [
    ["escaped slash", '"a\\/b"'],
    ["escape of a printable character", '"\\u0041"'],
    ["uppercase hex", '"\\u00E9"'],
    ["\\u escape where Python writes \\n", '"\\u000a"'],
    ["raw non-ASCII", '"caf\u00e9"'],
    ["raw DEL", '"a\u007fb"'],
    ["raw control character", '"a\u0001b"'],
    ["float with a trailing zero", "1.50"],
    ["uppercase exponent", "1E5"],
    ["exponent Python prints positionally", "1e5"],
    ["positional where Python prints an exponent", "0.00001"],
    ["digit beyond double precision", "1.8944087000000001"],
    ["integer -0", "-0"],
    ["NaN", "NaN"],
    ["Infinity", "-Infinity"],
    ["duplicate key, sorted", '{"a":1,"a":2}'],
    ["duplicate key, unsorted", '{"b":1,"a":2,"b":3}'],
    ["key with an escape", '{"\\u00e9":1}'],
    ["whitespace", '{"a": 1}'],
    ["leading whitespace", ' {"a":1}'],
    ["nesting beyond 512", "[".repeat(600) + "]".repeat(600)],
  ];
  for (const [why, text] of refused) assert.equal(scan(text), undefined, why);
});

function randomValue(r: () => number, depth: number): JsonValue {
  const pick = Math.floor(r() * (depth > 3 ? 6 : 8));
  const chars = 'ab_Z9 ~"\\\n\u0001\u00e9\u007f\u{1F680}';
  const str = () =>
    Array.from({ length: Math.floor(r() * 5) }, () => [...chars][Math.floor(r() * 13)]).join("");
  switch (pick) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return Math.floor((r() - 0.5) * 1e6);
    case 3:
      return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
    case 4:
    case 5:
      return str();
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const obj: Record<string, JsonValue> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--)
        obj["k" + str().replace(/[^a-zA-Z_9 ~]/g, "")] = randomValue(r, depth + 1);
      return obj;
    }
  }
}

test("random values written as the writers write them scan to their canonical form", async () => {
  await withSeed("SCAN_SEED", async (r) => {
    for (let i = 0; i < 3000; i++) {
      const value = randomValue(r, 0);
      const written = orderedJson(value);
      assert.equal(scan(written), canonicalJson(value), `value ${written}`);
    }
  });
});

test("scannedNumbers tells when JSON.parse builds what parseJson builds", () => {
  const exact = [
    '{"a":1,"b":0.5,"c":"x\\u00e9\\ud800","d":[1,-2,null,true],"__proto__":{"e":1795744701.123456}}',
    "123456789012345",
    "-0.0001",
  ];
  const pythonView = ["3.0", "-0.0", "1e-07", "1e+16", "1234567890123456", '{"a":[1000000000000000.0]}'];
  for (const text of [...exact, ...pythonView]) {
    assert.equal(scan(text), canonicalJson(parseJson(text)), text);
    assert.equal(scannedNumbers.jsonParseExact, exact.includes(text), text);
  }
  for (const text of exact) assert.deepEqual(JSON.parse(text), parseJson(text), text);
});
