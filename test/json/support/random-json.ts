/**
 * Seeded random JSON values aimed at the rules where the canonical form is easy to get wrong:
 * Python's float repr at its boundaries, ints beyond 2^53, escapes (control characters, DEL,
 * non-ASCII, lone surrogates, astral pairs), keys sorted by code point (U+FF01 before U+1F680,
 * unlike UTF-16), integer-like keys (JS lists them first), undefined members, `__proto__`.
 */
import { PyFloat, type JsonValue } from "../../../src/json/canonical.js";

/** Floats where Python's repr switches form, rounds, or is not a finite number. */
const BOUNDARY_FLOATS = [
  0.1,
  -0,
  1e-4,
  9.999e-5,
  1e-5,
  1e15,
  1e16,
  9999999999999998,
  1e21,
  1e22,
  2 ** 53 + 2,
  5e-324,
  1.7976931348623157e308,
  1 / 3,
  1795744701.8944087,
  NaN,
  Infinity,
  -Infinity,
];

const CHARS = [...'az_Z09 ~/"\\\n\t\u0000\u001f\u007f\u00e9\u2028\ue000\uff01\uffff\u{1F680}\u{10FFFF}'];

export function randomString(r: () => number, maxLength = 6): string {
  let s = "";
  for (let n = Math.floor(r() * (maxLength + 1)); n > 0; n--) s += CHARS[Math.floor(r() * CHARS.length)];
  if (r() < 0.05) s += r() < 0.5 ? "\ud800" : "\udfff"; // a lone surrogate
  return s;
}

function randomKey(r: () => number): string {
  const pick = r();
  if (pick < 0.15) return String(Math.floor(r() * 20)); // integer-like: listed first by JS
  if (pick < 0.5) return `k${Math.floor(r() * 30)}`;
  return randomString(r, 4);
}

export function randomNumber(r: () => number): number | bigint | PyFloat {
  switch (Math.floor(r() * 6)) {
    case 0:
      return BOUNDARY_FLOATS[Math.floor(r() * BOUNDARY_FLOATS.length)];
    case 1:
      return new PyFloat(r() < 0.5 ? Math.floor((r() - 0.5) * 1e4) : 1e16 * Math.floor(r() * 10));
    case 2:
      return r() < 0.5 ? 2n ** 64n + BigInt(Math.floor(r() * 1000)) : -(2n ** 53n) - 1n;
    case 3:
      return Math.floor((r() - 0.5) * 2 ** 54);
    case 4:
      return 1795744701 + Math.floor(r() * 1e6) / 1e6;
    default:
      return (r() - 0.5) * 10 ** Math.floor(r() * 60 - 30);
  }
}

/** Any value; members may be undefined (an array prints them as null, an object drops them). */
export function randomValue(r: () => number, depth = 0): JsonValue | undefined {
  switch (Math.floor(r() * (depth > 2 ? 6 : 8))) {
    case 0:
      return r() < 0.3 ? undefined : r() < 0.5 ? null : r() < 0.5;
    case 1:
    case 2:
      return randomNumber(r);
    case 3:
    case 4:
    case 5:
      return randomString(r);
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1)) as JsonValue;
    default:
      return randomObject(r, depth + 1);
  }
}

/** An object with its keys in random order. */
export function randomObject(r: () => number, depth = 0): Record<string, JsonValue> {
  const obj: Record<string, JsonValue> = {};
  for (let n = Math.floor(r() * 6); n > 0; n--) {
    const key = r() < 0.03 ? "__proto__" : randomKey(r);
    // An own member, as the parser makes it: `obj.__proto__ = v` would set the prototype.
    Object.defineProperty(obj, key, {
      value: randomValue(r, depth),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return obj;
}
