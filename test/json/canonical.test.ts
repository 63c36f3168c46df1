import assert from "node:assert/strict";
import { test } from "node:test";
import {
  PY_DEFAULT,
  PyFloat,
  canonicalJson,
  compareCodePoints,
  orderedJson,
  parseJson,
  parseJsonCheckingTokens,
  pyFloatRepr,
} from "../../src/json/canonical.js";

// Each expected value was printed by CPython 3:
// json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
const ROUND_TRIPS: Array<[rule: string, text: string, python: string]> = [
  ["astral character as a surrogate pair", '"\\ud83d\\ude80"', '"\\ud83d\\ude80"'],
  ["raw astral character is escaped as a pair", '"\u{1F680}"', '"\\ud83d\\ude80"'],
  ["DEL is escaped", '"a\\u007fb"', '"a\\u007fb"'],
  ["raw DEL is escaped", '"a\u007fb"', '"a\\u007fb"'],
  [
    "short escapes, / left alone, control chars as \\u",
    '"\\u00e9\\n\\t\\r\\b\\f\\\\\\"/\\u0001\\u001f \\u2028"',
    '"\\u00e9\\n\\t\\r\\b\\f\\\\\\"/\\u0001\\u001f \\u2028"',
  ],
  ["raw non-ASCII is escaped in lowercase hex", '"é\u2028\uFFFF"', '"\\u00e9\\u2028\\uffff"'],
  ["small float uses a two-digit negative exponent", "1e-07", "1e-07"],
  ["1e16 is scientific", "1e+16", "1e+16"],
  ["1e16 written without sign", "1e16", "1e+16"],
  ["integral float keeps .0", "3.0", "3.0"],
  ["negative zero float", "-0.0", "-0.0"],
  ["negative zero integer is 0", "-0", "0"],
  ["integer above 2^64 keeps its digits", "18446744073709551617", "18446744073709551617"],
  ["negative integer below -2^53", "-9007199254740993", "-9007199254740993"],
  ["largest safe integer", "9007199254740991", "9007199254740991"],
  ["overflowing float is Infinity", "1E400", "Infinity"],
  ["1e-4 is positional", "0.0001", "0.0001"],
  ["1e-5 is scientific", "0.00001", "1e-05"],
  ["long float is shortest round trip", "123456789012345678901234567890.5", "1.2345678901234568e+29"],
  ["1e15 is positional", "1000000000000000.0", "1000000000000000.0"],
  ["exponent form of an integral float", "1.0e5", "100000.0"],
  ["smallest subnormal", "5e-324", "5e-324"],
  ["largest double", "1.7976931348623157e308", "1.7976931348623157e+308"],
  [
    "floats in an array",
    "[1.5e300, 2.5e-300, 0.1, 100.0, 1e15, 1e-4]",
    "[1.5e+300,2.5e-300,0.1,100.0,1000000000000000.0,0.0001]",
  ],
  [
    "keys sorted by code point at every level (U+FF01 before U+1F680, '10' before '2')",
    '{"b":1,"a":{"d":[],"c":{}},"\\uff01":1,"\\ud83d\\ude80":2,"10":3,"2":4}',
    '{"10":3,"2":4,"a":{"c":{},"d":[]},"b":1,"\\uff01":1,"\\ud83d\\ude80":2}',
  ],
  ["literals", "[true,false,null]", "[true,false,null]"],
  ["whitespace is dropped", ' { "a" : [ 1 , 2 ] } ', '{"a":[1,2]}'],
  ["last duplicate key wins", '{"a":1,"a":2}', '{"a":2}'],
  ["__proto__ is an ordinary key", '{"__proto__":{"x":1}}', '{"__proto__":{"x":1}}'],
];

for (const [rule, text, python] of ROUND_TRIPS) {
  test(`canonical: ${rule}`, () => {
    assert.equal(canonicalJson(parseJson(text)), python);
    // Canonical output is a fixed point.
    assert.equal(canonicalJson(parseJson(python)), python);
  });
}

const FLOAT_REPRS: Array<[number, string]> = [
  [1e-7, "1e-07"],
  [1e16, "1e+16"],
  [3, "3.0"],
  [-0, "-0.0"],
  [0, "0.0"],
  [0.1, "0.1"],
  [1795744701.8944087, "1795744701.8944087"],
  [1e15, "1000000000000000.0"],
  [9999999999999998, "9999999999999998.0"],
  [1.2345678901234568e20, "1.2345678901234568e+20"],
  [-2.5e-5, "-2.5e-05"],
  [1e100, "1e+100"],
  [NaN, "NaN"],
  [Infinity, "Infinity"],
  [-Infinity, "-Infinity"],
];

for (const [x, repr] of FLOAT_REPRS) {
  test(`pyFloatRepr(${x}) = ${repr}`, () => {
    assert.equal(pyFloatRepr(x), repr);
  });
}

test("parse keeps Python's view of number tokens", () => {
  assert.equal(parseJson("3"), 3);
  assert.ok(parseJson("3.0") instanceof PyFloat);
  assert.ok(parseJson("1e16") instanceof PyFloat);
  assert.equal(parseJson("0.5"), 0.5);
  assert.equal(parseJson("9007199254740993"), 9007199254740993n);
  assert.ok(Object.is(parseJson("-0"), 0), "integer -0 is 0");
  assert.ok(Object.is((parseJson("-0.0") as PyFloat).value, -0));
});

test("serializing JS values: integral numbers are ints, other numbers floats, bigint exact", () => {
  assert.equal(
    canonicalJson({ b: 1, a: 0.5, c: 2n ** 70n, d: new PyFloat(2) }),
    '{"a":0.5,"b":1,"c":1180591620717411303424,"d":2.0}',
  );
  assert.equal(canonicalJson(1e21), "1000000000000000000000", "an integral JS number prints all its digits");
  assert.equal(canonicalJson(-0), "-0.0");
  assert.equal(canonicalJson({ a: undefined, b: null }), '{"b":null}');
});

test("orderedJson keeps insertion order; PY_DEFAULT separators match Python's defaults", () => {
  assert.equal(orderedJson({ seq: 0, b: [1, 2], a: "x" }), '{"seq":0,"b":[1,2],"a":"x"}');
  // json.dumps({"b": [1, 2], "a": "x"}, sort_keys=True)
  assert.equal(canonicalJson({ b: [1, 2], a: "x" }, PY_DEFAULT), '{"a": "x", "b": [1, 2]}');
});

test("compareCodePoints orders astral characters after the whole BMP", () => {
  const keys = ["\u{1F680}", "\uFF01", "b", "a", "ab", ""];
  assert.deepEqual([...keys].sort(compareCodePoints), ["", "a", "ab", "b", "\uFF01", "\u{1F680}"]);
});

test("invalid JSON is rejected with a position", () => {
  for (const bad of ["", "{", '{"a"}', "[1,]", "01", "tru", '"\\x"', '"a\nb"', "1 2", '{"a":1,}', "-"]) {
    assert.throws(() => parseJson(bad), /at position \d+/, JSON.stringify(bad));
  }
});

const TOKEN_CHECKS: Array<[text: string, canonical: boolean]> = [
  ['{"a":1,"b":[1.5,"x\\u00e9\\n"],"c":null}', true],
  ['{"a": 1}', false],
  ["1e-07", true],
  ["1E-07", false],
  ["1.0e-07", false],
  ["1795744701.8944087", true],
  ["1795744701.8944086", false], // same double, not how Python prints it
  ["3.0", true],
  ["3.00", false],
  ["-0", false],
  ["-0.0", true],
  ['"\\u00E9"', false],
  ['"\\u0041"', false],
  ['"\\u000a"', false],
  ['"\\/"', false],
  ['"\\ud83d\\ude80"', true],
  ["18446744073709551617", true],
];

for (const [text, canonical] of TOKEN_CHECKS) {
  test(`parseJsonCheckingTokens(${text}) → ${canonical}`, () => {
    const r = parseJsonCheckingTokens(text);
    assert.equal(r.canonical, canonical);
    assert.deepEqual(canonicalJson(r.value), canonicalJson(parseJson(text)));
  });
}
