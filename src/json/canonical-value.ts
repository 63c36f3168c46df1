/**
 * The value of JSON bytes that scanCanonical confirmed (canonical tokens: printable ASCII, no
 * whitespace, plain keys, no duplicate keys) and whose numbers read the same with JSON.parse as
 * with parseJson (`scannedNumbers.jsonParseExact`), built from the bytes: what JSON.parse of
 * their text builds, without decoding the text first.
 *
 * Why not JSON.parse: V8's JSON.parse internalizes every string value of up to 10 characters
 * (puts it into the isolate's string table), so a WAL whose payloads hold short ids that differ
 * on every line (task ids) pays a string-table insertion per value and grows the table. Here a
 * value is a plain string, an object key a string shared by every object that has that key.
 */
import type { JsonValue } from "./canonical.js";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const DOT = 0x2e;

// Builder state lives at module level (synchronous, not re-entrant), like the scanner's.
let src: Buffer = Buffer.alloc(0);
let pos = 0;

/**
 * The value of the bytes `[start, end)` of `bytes`: one value scanCanonical accepted, with
 * `scannedNumbers.jsonParseExact` (see the file's comment; other bytes give an unspecified value).
 */
export function valueOfCanonicalBytes(bytes: Buffer, start: number, end: number): JsonValue {
  src = bytes;
  pos = start;
  try {
    const value = readValue();
    if (pos !== end) throw new Error(`canonical value: ${end - pos} bytes left after the value`);
    return value;
  } finally {
    src = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

function readValue(): JsonValue {
  const c = src[pos];
  if (c === QUOTE) return readString();
  if (c === OPEN_BRACE) return readObject();
  if (c === OPEN_BRACKET) return readArray();
  if (c === MINUS || (c >= 0x30 && c <= 0x39)) return readNumber();
  if (c === 0x74) {
    pos += 4;
    return true;
  }
  if (c === 0x66) {
    pos += 5;
    return false;
  }
  pos += 4;
  return null;
}

function readString(): string {
  const start = pos;
  let p = start + 1;
  let escaped = false;
  for (let c = src[p]; c !== QUOTE; c = src[p]) {
    if (c === BACKSLASH) {
      escaped = true;
      p += 2; // past `\x`; the four hex digits of `\uXXXX` hold no quote
    } else p++;
  }
  pos = p + 1;
  // Escapes are rare: JSON.parse of the token reads them exactly.
  return escaped
    ? (JSON.parse(src.toString("latin1", start, pos)) as string)
    : src.toString("latin1", start + 1, p);
}

function readObject(): { [key: string]: JsonValue } {
  const o: { [key: string]: JsonValue } = {};
  pos++;
  if (src[pos] === CLOSE_BRACE) {
    pos++;
    return o;
  }
  while (true) {
    const key = readKey();
    pos++; // `:`
    const value = readValue();
    if (key === "__proto__") {
      // An own key, as JSON.parse makes it (an assignment would set the prototype).
      Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
    } else o[key] = value;
    if (src[pos++] !== COMMA) return o; // `}`
  }
}

function readArray(): JsonValue[] {
  const a: JsonValue[] = [];
  pos++;
  if (src[pos] === CLOSE_BRACKET) {
    pos++;
    return a;
  }
  while (true) {
    a.push(readValue());
    if (src[pos++] !== COMMA) return a; // `]`
  }
}

/**
 * Keys seen lately, direct-mapped by length and two of their bytes: payloads repeat a few keys,
 * and handing V8 the same string each time spares it a string-table lookup per property.
 */
const KEYS = new Array<string | undefined>(256).fill(undefined);

/** An object key (a string without escapes: scanCanonical takes no other). */
function readKey(): string {
  const start = pos + 1;
  let end = start;
  while (src[end] !== QUOTE) end++;
  pos = end + 1;
  const n = end - start;
  if (n === 0) return "";
  const slot = (n * 31 + src[end - 1] * 7 + src[start]) & (KEYS.length - 1);
  const known = KEYS[slot];
  if (known !== undefined && known.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (src[start + i] !== known.charCodeAt(i)) {
        same = false;
        break;
      }
    }
    if (same) return known;
  }
  return (KEYS[slot] = src.toString("latin1", start, end));
}

/** Integers below this are doubles, and so is m * 10 + d for any m below it / 10. */
const MAX_EXACT = 2 ** 53;
/** 10^k for the k a double holds exactly. */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * A number token: an integer of at most 15 digits or a positional float (jsonParseExact rules
 * out exponents, integral floats and longer integers). Digits m with m < 2^53 and k fraction
 * digits are m / 10^k, both exact, so the division rounds once, to what JSON.parse gives; other
 * tokens take Number().
 */
function readNumber(): number {
  const start = pos;
  let p = start;
  if (src[p] === MINUS) p++;
  let m = 0;
  let fraction = -1;
  for (; ; p++) {
    const c = src[p];
    if (c >= 0x30 && c <= 0x39) m = m * 10 + c - 0x30;
    else if (c === DOT) fraction = p;
    else break;
  }
  pos = p;
  const k = fraction < 0 ? 0 : p - fraction - 1;
  if (m >= MAX_EXACT || k >= POWERS_OF_TEN.length) return Number(src.toString("latin1", start, p));
  const x = m / POWERS_OF_TEN[k];
  return src[start] === MINUS ? -x : x;
}
