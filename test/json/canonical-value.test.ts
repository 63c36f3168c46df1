/**
 * Values built from confirmed canonical bytes against JSON.parse and parseJson of their text:
 * equal value for value (-0, floats at every magnitude, escapes, nesting), keys in the same own
 * order (integer-like keys first), `__proto__` an own key.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { orderedJson, parseJson, type JsonValue } from "../../src/json/canonical.js";
import { resetArena, scanCanonical, scannedNumbers } from "../../src/json/canonical-scan.js";
import { valueOfCanonicalBytes } from "../../src/json/canonical-value.js";
import { randomObject } from "./support/random-json.js";
import { withSeed } from "../helpers.js";

/** The value built from `text`, or undefined when the scanner does not confirm it for JSON.parse. */
function built(text: string): JsonValue | undefined {
  // A byte before and after: the builder reads only its range.
  const bytes = Buffer.from(`,${text},`, "utf8");
  resetArena();
  if (scanCanonical(bytes, 1, bytes.length - 1) !== bytes.length - 1 || !scannedNumbers.jsonParseExact)
    return undefined;
  return valueOfCanonicalBytes(bytes, 1, bytes.length - 1);
}

function assertSame(text: string): void {
  const value = built(text);
  assert.notEqual(value, undefined, `not confirmed: ${text}`);
  assert.deepStrictEqual(value, JSON.parse(text), text);
  assert.deepStrictEqual(value, parseJson(text), text);
  assert.equal(orderedJson(value), orderedJson(JSON.parse(text)), `own key order: ${text}`);
}

test("values built from canonical bytes are what JSON.parse builds", () => {
  const texts = [
    '{"task_id":"T-000000","attempt":1}',
    '{"exit_code":0,"cost_usd":0.0123,"input_tokens":1200,"output_tokens":340,"model":"sonnet"}',
    '{"b":{"z":[1,{"y":2,"x":3}],"a":null},"a":true,"c":false,"d":[],"e":{},"":""}',
    '{"ts":1795744701.123456,"third":0.3333333333333333,"edge":0.30000000000000004,"tiny":0.0001}',
    '{"neg":-12,"negf":-0.5,"max":999999999999999,"min":-999999999999999,"z":0}',
    '{"s":"caf\\u00e9 \\ud83d\\ude80 \\"q\\" \\\\ \\n\\r\\t\\b\\f \\u007f \\u0000","t":"\\\\"}',
    '{"10":1,"2":2,"a":3,"1":4}',
    '{"__proto__":{"polluted":true},"a":1}',
    '[[[]],[{}],"x",-1.25]',
    '"plain"',
    "12",
    "null",
  ];
  for (const text of texts) assertSame(text);
  const proto = built('{"__proto__":{"polluted":true}}') as Record<string, JsonValue>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.ok(Object.hasOwn(proto, "__proto__"));
});

test("random objects written as the writers write them build what JSON.parse builds", async () => {
  await withSeed("CANONICAL_VALUE_SEED", async (r) => {
    let confirmed = 0;
    for (let i = 0; i < 5000; i++) {
      const text = orderedJson(randomObject(r));
      if (built(text) === undefined) continue; // the lossless parser's (scannedNumbers)
      assertSame(text);
      confirmed++;
    }
    assert.ok(confirmed > 1000, `only ${confirmed} of 5000 confirmed`);
  });
});
