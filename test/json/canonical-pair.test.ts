import assert from "node:assert/strict";
import { test } from "node:test";
import { PyFloat, canonicalJson, orderedJson } from "../../src/json/canonical.js";
import { canonicalAndOrdered } from "../../src/json/canonical-pair.js";
import { withSeed } from "../helpers.js";
import { randomObject, randomValue } from "./support/random-json.js";

test("canonicalAndOrdered gives canonicalJson's and orderedJson's bytes on seeded random values", async () => {
  await withSeed("CANONICAL_PAIR_SEED", async (r) => {
    for (let i = 0; i < 4000; i++) {
      const value = i % 2 === 0 ? randomObject(r) : randomValue(r);
      const pair = canonicalAndOrdered(value);
      const what = `value ${orderedJson(value)}`;
      assert.equal(pair.canonical, canonicalJson(value), what);
      assert.equal(pair.ordered, orderedJson(value), what);
    }
  });
});

test("canonicalAndOrdered: keys by code point at every level, own order kept in the ordered text", () => {
  const value = {
    b: 1,
    a: { d: [new PyFloat(3), undefined, { y: 1, x: 2 }], c: {} },
    "\uff01": 1,
    "\u{1F680}": 2,
    "10": 3,
    "2": 4,
    gone: undefined,
  };
  assert.deepEqual(canonicalAndOrdered(value), {
    canonical:
      '{"10":3,"2":4,"a":{"c":{},"d":[3.0,null,{"x":2,"y":1}]},"b":1,"\\uff01":1,"\\ud83d\\ude80":2}',
    ordered: '{"2":4,"10":3,"b":1,"a":{"d":[3.0,null,{"y":1,"x":2}],"c":{}},"\\uff01":1,"\\ud83d\\ude80":2}',
  });
  const sorted = canonicalAndOrdered({ a: [1, { b: 0.5 }], b: "\u00e9" });
  assert.equal(sorted.canonical, '{"a":[1,{"b":0.5}],"b":"\\u00e9"}');
  assert.equal(sorted.ordered, sorted.canonical);
});
