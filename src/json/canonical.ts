/**
 * Python-compatible JSON: canonical serialization (json.dumps with sort_keys and
 * ensure_ascii) and a lossless parser that keeps what Python would see in each
 * number token (int vs float, integers beyond 2^53).
 *
 * Value model:
 *  - integer tokens within the safe range → number; beyond it → bigint;
 *  - float tokens with a fractional value → number;
 *  - float tokens whose value is integral (`3.0`, `1e16`, `-0.0`) → PyFloat, so they
 *    print back as floats.
 * A JS number is printed as an integer when Number.isInteger and as a Python float repr otherwise.
 */

import { finiteNumberText } from "./number-text.js";

export class PyFloat {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toJSON(): number {
    return this.value;
  }
}

export type JsonValue =
  null | boolean | number | bigint | PyFloat | string | JsonValue[] | { [key: string]: JsonValue };

export interface Separators {
  item: string;
  key: string;
}
/** `separators=(",", ":")`, what WAL hashing uses. */
export const COMPACT: Separators = { item: ",", key: ":" };
/** Python's default separators, what the audit log uses. */
export const PY_DEFAULT: Separators = { item: ", ", key: ": " };

/** Python `repr(float)`. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const ax = Math.abs(x);
  if (ax >= 1e-4 && ax < 1e16) {
    // Here JS and Python both print the shortest round-trip digits positionally; Python adds
    // ".0" to an integral value.
    const text = finiteNumberText(x);
    return Number.isInteger(x) ? text + ".0" : text;
  }
  const sign = x < 0 ? "-" : "";
  // toExponential() with no argument gives the shortest round-trip digits, like Python's repr.
  const [mantissa, expText] = Math.abs(x).toExponential().split("e");
  const exp = Number(expText);
  const digits = mantissa.replace(".", "");
  if (exp >= -4 && exp < 16) {
    let out: string;
    if (exp < 0) {
      out = "0." + "0".repeat(-exp - 1) + digits;
    } else if (digits.length <= exp + 1) {
      out = digits + "0".repeat(exp + 1 - digits.length) + ".0";
    } else {
      out = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
    }
    return sign + out;
  }
  const expSign = exp < 0 ? "-" : "+";
  const expDigits = String(Math.abs(exp)).padStart(2, "0");
  return `${sign}${mantissa}e${expSign}${expDigits}`;
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
  0x08: "\\b",
  0x0c: "\\f",
};

const NEEDS_ESCAPE = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;

/** A JSON string literal as Python prints it with ensure_ascii=True. */
export function pyStringLiteral(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  let out = '"';
  let plainStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(plainStart, i);
    plainStart = i + 1;
    const short = SHORT_ESCAPES[c];
    out += short ?? "\\u" + c.toString(16).padStart(4, "0");
  }
  return out + s.slice(plainStart) + '"';
}

/** Orders keys by Unicode code point, as Python sorts str (UTF-16 order differs above U+FFFF). */
export function compareCodePoints(a: string, b: string): number {
  const la = a.length;
  const lb = b.length;
  let i = 0;
  let j = 0;
  while (i < la && j < lb) {
    const ca = a.codePointAt(i)!;
    const cb = b.codePointAt(j)!;
    if (ca !== cb) return ca - cb;
    i += ca > 0xffff ? 2 : 1;
    j += cb > 0xffff ? 2 : 1;
  }
  return la - i - (lb - j);
}

/** A JS number as Python prints it: integral as an int (all digits), otherwise a float repr. */
export function numberText(value: number): string {
  if (!Number.isInteger(value) || Object.is(value, -0)) return pyFloatRepr(value);
  // String(1e21) is "1e+21"; an integer prints all its digits, like a Python int.
  return Math.abs(value) < 1e21 ? finiteNumberText(value) : BigInt(value).toString();
}

// Strings are built by concatenation (V8 ropes), which beats collecting parts in an array for
// the many small objects of a WAL; the result is flattened once, when it is hashed or written.
function writeValue(value: unknown, sep: Separators, sortKeys: boolean): string {
  if (!isContainer(value)) return scalarText(value);
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += sep.item;
      out += writeValue(value[i], sep, sortKeys);
    }
    return out + "]";
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (sortKeys) keys.sort(compareCodePoints);
  let out = "{";
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const v = obj[k];
    if (v === undefined) continue;
    if (!first) out += sep.item;
    first = false;
    out += pyStringLiteral(k) + sep.key + writeValue(v, sep, sortKeys);
  }
  return out + "}";
}

/** An array or an object other than a PyFloat: each writer lays those out its own way. */
export function isContainer(value: unknown): value is object {
  return typeof value === "object" && value !== null && !(value instanceof PyFloat);
}

/** The JSON text of anything but a container (a PyFloat counts as a number). */
export function scalarText(value: unknown): string {
  switch (typeof value) {
    case "string":
      return pyStringLiteral(value);
    case "number":
      return numberText(value);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return value.toString();
    case "undefined":
      return "null";
    case "object":
      if (value === null) return "null";
      if (value instanceof PyFloat) return pyFloatRepr(value.value);
      throw new TypeError("scalarText: a container");
    default:
      throw new TypeError(`cannot serialize ${typeof value} as JSON`);
  }
}

/** `json.dumps(value, sort_keys=True, separators=sep, ensure_ascii=True)`. */
export function canonicalJson(value: unknown, sep: Separators = COMPACT): string {
  return writeValue(value, sep, true);
}

/** Like canonicalJson but keeps the object's own key order (WAL lines are written in field order). */
export function orderedJson(value: unknown, sep: Separators = COMPACT): string {
  return writeValue(value, sep, false);
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position}`);
    this.name = "JsonSyntaxError";
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// Parser state lives at module level (parsing is synchronous and not re-entrant): no closures
// to allocate per call, which matters when verifying a million WAL lines.
let src = "";
let pos = 0;

function fail(msg: string): never {
  throw new JsonSyntaxError(msg, pos);
}

// Set by parseJsonCheckingTokens: whether every token so far is written as Python writes it.
let checkTokens = false;
let tokensCanonical = true;

function skipWs(): void {
  while (pos < src.length) {
    const c = src.charCodeAt(pos);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      pos++;
      tokensCanonical = false;
    } else break;
  }
}

/** Whether `\u` + hex is how Python (ensure_ascii) writes that character. */
function isCanonicalUnicodeEscape(hex: string, code: number): boolean {
  if (hex !== hex.toLowerCase()) return false;
  if (code >= 0x20 && code <= 0x7e) return false; // printed as is (or as a short escape)
  return SHORT_ESCAPES[code] === undefined;
}

const HEX_RE = /^[0-9a-fA-F]{4}$/;

/** A run of string characters that need no decoding (sticky: matched at `lastIndex`). */
// eslint-disable-next-line no-control-regex -- control characters end a plain run: they must be escaped
const PLAIN_RUN = /[^"\\\u0000-\u001f]*/y;

function parseString(): string {
  // pos at the opening quote
  pos++;
  let out = "";
  const len = src.length;
  while (true) {
    // Skip the plain run natively; test() on a sticky regex moves lastIndex without allocating.
    PLAIN_RUN.lastIndex = pos;
    PLAIN_RUN.test(src);
    const runEnd = PLAIN_RUN.lastIndex;
    if (runEnd > pos) out = out === "" ? src.slice(pos, runEnd) : out + src.slice(pos, runEnd);
    pos = runEnd;
    if (pos >= len) fail("unterminated string");
    const c = src.charCodeAt(pos);
    if (c === 0x22) {
      pos++;
      return out;
    }
    if (c < 0x20) fail("control character in string");
    // c is a backslash
    switch (src.charCodeAt(pos + 1)) {
      case 0x22:
        out += '"';
        break;
      case 0x5c:
        out += "\\";
        break;
      case 0x2f:
        out += "/";
        tokensCanonical = false; // Python never escapes "/"
        break;
      case 0x62:
        out += "\b";
        break;
      case 0x66:
        out += "\f";
        break;
      case 0x6e:
        out += "\n";
        break;
      case 0x72:
        out += "\r";
        break;
      case 0x74:
        out += "\t";
        break;
      case 0x75: {
        const hex = src.slice(pos + 2, pos + 6);
        if (!HEX_RE.test(hex)) fail("bad \\u escape");
        const code = parseInt(hex, 16);
        if (checkTokens && !isCanonicalUnicodeEscape(hex, code)) tokensCanonical = false;
        out += String.fromCharCode(code);
        pos += 4;
        break;
      }
      default:
        fail("bad escape");
    }
    pos += 2;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * The end of the number token `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?` at `start` in `text`
 * (-1 when none starts there); a `.` or exponent without digits is left unread.
 */
export function numberTokenEnd(text: string, start: number): number {
  let p = start;
  if (text.charCodeAt(p) === 0x2d) p++;
  const first = text.charCodeAt(p);
  if (first === 0x30) p++;
  else if (first > 0x30 && first <= 0x39) {
    p++;
    while (isDigit(text.charCodeAt(p))) p++;
  } else return -1;
  if (text.charCodeAt(p) === 0x2e && isDigit(text.charCodeAt(p + 1))) {
    p += 2;
    while (isDigit(text.charCodeAt(p))) p++;
  }
  const e = text.charCodeAt(p);
  if (e === 0x65 || e === 0x45) {
    let q = p + 1;
    const sign = text.charCodeAt(q);
    if (sign === 0x2b || sign === 0x2d) q++;
    if (isDigit(text.charCodeAt(q))) {
      p = q + 1;
      while (isDigit(text.charCodeAt(p))) p++;
    }
  }
  return p;
}

/** Whether a number token (from numberTokenEnd) has a fraction or an exponent. */
export function isFloatToken(token: string): boolean {
  return token.includes(".") || token.includes("e") || token.includes("E");
}

function parseNumber(): JsonValue {
  const start = pos;
  const end = numberTokenEnd(src, pos);
  if (end < 0) {
    if (src.charCodeAt(pos) === 0x2d) pos++; // the error names the character after the sign
    fail("unexpected character");
  }
  pos = end;
  const token = src.slice(start, end);
  const isFloat = isFloatToken(token);
  if (!isFloat) {
    // Up to 15 digits is always exact as a double; longer tokens go through BigInt.
    // (`|| 0`: the integer token "-0" is Python's int 0, not -0.0.)
    if (pos - start <= 15) {
      if (token === "-0") tokensCanonical = false;
      return Number(token) || 0;
    }
    const big = BigInt(token);
    return big > MAX_SAFE || big < -MAX_SAFE ? big : Number(big);
  }
  const x = Number(token);
  if (checkTokens && pyFloatRepr(x) !== token) tokensCanonical = false;
  return Number.isInteger(x) || !Number.isFinite(x) ? new PyFloat(x) : x;
}

function parseValue(depth: number): JsonValue {
  if (depth > 512) fail("nesting too deep");
  skipWs();
  const c = src.charCodeAt(pos);
  if (c === 0x7b) {
    // {
    pos++;
    const obj: Record<string, JsonValue> = {};
    skipWs();
    if (src.charCodeAt(pos) === 0x7d) {
      pos++;
      return obj;
    }
    while (true) {
      skipWs();
      if (src.charCodeAt(pos) !== 0x22) fail("expected string key");
      const key = parseString();
      skipWs();
      if (src.charCodeAt(pos) !== 0x3a) fail("expected ':'");
      pos++;
      const v = parseValue(depth + 1);
      // Written back, a duplicate key is printed once: the line is not what a writer prints.
      if (checkTokens && tokensCanonical && Object.hasOwn(obj, key)) tokensCanonical = false;
      // Python keeps the last duplicate key; so do we. `__proto__` must stay an own key.
      if (key === "__proto__") {
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        obj[key] = v;
      }
      skipWs();
      const n = src.charCodeAt(pos);
      if (n === 0x2c) {
        pos++;
        continue;
      }
      if (n === 0x7d) {
        pos++;
        return obj;
      }
      fail("expected ',' or '}'");
    }
  }
  if (c === 0x5b) {
    // [
    pos++;
    const arr: JsonValue[] = [];
    skipWs();
    if (src.charCodeAt(pos) === 0x5d) {
      pos++;
      return arr;
    }
    while (true) {
      arr.push(parseValue(depth + 1));
      skipWs();
      const n = src.charCodeAt(pos);
      if (n === 0x2c) {
        pos++;
        continue;
      }
      if (n === 0x5d) {
        pos++;
        return arr;
      }
      fail("expected ',' or ']'");
    }
  }
  if (c === 0x22) return parseString();
  if (c === 0x2d || isDigit(c)) {
    if (c === 0x2d && src.startsWith("-Infinity", pos)) {
      pos += 9;
      return new PyFloat(-Infinity);
    }
    return parseNumber();
  }
  if (src.startsWith("true", pos)) {
    pos += 4;
    return true;
  }
  if (src.startsWith("false", pos)) {
    pos += 5;
    return false;
  }
  if (src.startsWith("null", pos)) {
    pos += 4;
    return null;
  }
  if (src.startsWith("NaN", pos)) {
    pos += 3;
    return new PyFloat(NaN);
  }
  if (src.startsWith("Infinity", pos)) {
    pos += 8;
    return new PyFloat(Infinity);
  }
  return fail("unexpected character");
}

/** Parses JSON text keeping Python's view of every number (see the value model above). */
export function parseJson(text: string): JsonValue {
  checkTokens = false;
  return parse(text);
}

/**
 * parseJson that also tells whether every token is written exactly as Python's compact
 * `json.dumps(..., ensure_ascii=True)` writes its value: no whitespace, numbers as Python
 * prints them (`1e-07`, not `1E-7` or `1.00e-7`), escapes as ensure_ascii writes them. Raw
 * characters outside ASCII are not checked here (the caller knows whether the text is ASCII).
 * A key repeated in an object is not canonical (written back, it is printed once). Key order
 * is not checked.
 */
export function parseJsonCheckingTokens(text: string): { value: JsonValue; canonical: boolean } {
  checkTokens = true;
  try {
    const value = parse(text);
    return { value, canonical: tokensCanonical };
  } finally {
    checkTokens = false;
  }
}

function parse(text: string): JsonValue {
  src = text;
  pos = 0;
  tokensCanonical = true;
  try {
    const v = parseValue(0);
    skipWs();
    if (pos !== src.length) fail("trailing data");
    return v;
  } finally {
    src = "";
  }
}
