/**
 * The canonical JSON text of a value written with canonical tokens, computed from the text
 * alone: no values are built, an object's members are re-ordered only when their keys are not
 * sorted. This is the fast path of chain verification; it gives up (returns undefined) as soon
 * as the text is not provably what `canonicalJson(parseJson(text))` would reproduce token for
 * token, and the caller then takes the lossless parser.
 *
 * Gives up on: whitespace, any character outside 0x20..0x7E (raw DEL and non-ASCII included),
 * an escape Python's ensure_ascii would not write (`\/`, uppercase hex, `\u0041`, `\u000a`),
 * a key holding an escape, duplicate keys, a number not printed as Python prints it (`1E5`,
 * `1.50`, `-0`, a float digit beyond double precision), NaN/Infinity, nesting beyond 512.
 */
import { isFloatToken, numberTokenEnd, pyFloatRepr } from "./canonical.js";

// Scanner state lives at module level (synchronous, not re-entrant), like the parser's.
let src = "";
let pos = 0;
/** Bumped whenever an object's members had to be re-ordered (its text is not a slice). */
let rebuilds = 0;

/**
 * Canonical text of the JSON value starting at `start` in `text`; `scannedTo()` then tells
 * where it ended. Undefined when the text is not provably canonical (see above).
 */
export function canonicalTextAt(text: string, start: number): string | undefined {
  src = text;
  pos = start;
  try {
    return scanValue(0);
  } finally {
    src = "";
  }
}

/** Where the value read by the last canonicalTextAt ended. */
export function scannedTo(): number {
  return pos;
}

/** A run of characters Python prints as they are (sticky: matched at `lastIndex`). */
const PLAIN_RUN = /[\x20\x21\x23-\x5b\x5d-\x7e]*/y;

/** The end (after the closing quote) of a string literal at `start` without escapes, or -1. */
function plainStringEnd(text: string, start: number): number {
  if (text.charCodeAt(start) !== 0x22) return -1;
  PLAIN_RUN.lastIndex = start + 1;
  PLAIN_RUN.test(text);
  const end = PLAIN_RUN.lastIndex;
  return text.charCodeAt(end) === 0x22 ? end + 1 : -1;
}

function scanValue(depth: number): string | undefined {
  const c = src.charCodeAt(pos);
  if (c === 0x22) return scanString();
  if (c === 0x7b) return depth < 512 ? scanObject(depth) : undefined;
  if (c === 0x5b) return depth < 512 ? scanArray(depth) : undefined;
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return scanNumber();
  if (src.startsWith("true", pos)) return literal(4);
  if (src.startsWith("false", pos)) return literal(5);
  if (src.startsWith("null", pos)) return literal(4);
  return undefined;
}

function literal(length: number): string {
  const start = pos;
  pos += length;
  return src.slice(start, pos);
}

/** Escapes as Python's ensure_ascii writes them, by the escaped character. */
function shortEscapeCanonical(c: number): boolean {
  // \" \\ \b \f \n \r \t (never \/)
  return c === 0x22 || c === 0x5c || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1; // uppercase hex is not what Python writes
}

/** A `\uXXXX` escape is canonical when it is lowercase and Python would not print the char otherwise. */
function unicodeEscapeCanonical(at: number): boolean {
  let code = 0;
  for (let i = at; i < at + 4; i++) {
    const h = hexValue(src.charCodeAt(i));
    if (h < 0) return false;
    code = code * 16 + h;
  }
  if (code >= 0x20 && code <= 0x7e) return false;
  return !(code === 0x0a || code === 0x0d || code === 0x09 || code === 0x08 || code === 0x0c);
}

function scanString(): string | undefined {
  const start = pos;
  pos++;
  while (pos < src.length) {
    // Skip the plain run natively; test() on a sticky regex moves lastIndex without allocating.
    PLAIN_RUN.lastIndex = pos;
    PLAIN_RUN.test(src);
    pos = PLAIN_RUN.lastIndex;
    const c = src.charCodeAt(pos);
    if (c === 0x22) {
      pos++;
      return src.slice(start, pos);
    }
    if (c < 0x20 || c > 0x7e) return undefined;
    if (c === 0x5c) {
      const e = src.charCodeAt(pos + 1);
      if (e === 0x75) {
        if (!unicodeEscapeCanonical(pos + 2)) return undefined;
        pos += 6;
        continue;
      }
      if (!shortEscapeCanonical(e)) return undefined;
      pos += 2;
      continue;
    }
    pos++;
  }
  return undefined;
}

function scanNumber(): string | undefined {
  const start = pos;
  const end = numberTokenEnd(src, pos);
  if (end < 0) return undefined;
  pos = end;
  const next = src.charCodeAt(pos);
  // A `.` or exponent the token left unread is not JSON: the parser names it.
  if (next === 0x2e || next === 0x65 || next === 0x45) return undefined;
  const token = src.slice(start, end);
  const isFloat = isFloatToken(token);
  if (!isFloat) return token === "-0" ? undefined : token; // an int prints as its digits
  const x = Number(token);
  // Where JS and Python both print positionally, String(x) is repr(x) for a fractional x.
  const ax = Math.abs(x);
  if (ax >= 1e-4 && ax < 1e16 && String(x) === token) return token;
  return Number.isFinite(x) && pyFloatRepr(x) === token ? token : undefined;
}

function scanArray(depth: number): string | undefined {
  const start = pos;
  pos++;
  if (src.charCodeAt(pos) === 0x5d) {
    pos++;
    return "[]";
  }
  const before = rebuilds;
  const items: string[] = [];
  while (true) {
    const item = scanValue(depth + 1);
    if (item === undefined) return undefined;
    items.push(item);
    const n = src.charCodeAt(pos++);
    if (n === 0x5d) break;
    if (n !== 0x2c) return undefined;
  }
  return rebuilds === before ? src.slice(start, pos) : "[" + items.join(",") + "]";
}

// Members of the objects being scanned, shared by all levels (a stack): where each member's
// key and value start and end, and the value's text when it is not a slice of the source.
const keyStarts: number[] = [];
const keyEnds: number[] = [];
const valueEnds: number[] = [];
const rebuiltValues: Array<string | undefined> = [];
let top = 0;

function scanObject(depth: number): string | undefined {
  const start = pos;
  pos++;
  if (src.charCodeAt(pos) === 0x7d) {
    pos++;
    return "{}";
  }
  const before = rebuilds;
  const base = top;
  let sorted = true;
  try {
    while (true) {
      const keyEnd = plainStringEnd(src, pos);
      if (keyEnd < 0 || src.charCodeAt(keyEnd) !== 0x3a) return undefined;
      if (top > base) {
        const order = compareKeys(keyStarts[top - 1], keyEnds[top - 1], pos, keyEnd);
        if (order === 0) return undefined; // a duplicate: the parser decides
        if (order > 0) sorted = false;
      }
      const i = top++;
      keyStarts[i] = pos;
      keyEnds[i] = keyEnd;
      pos = keyEnd + 1;
      const rebuiltBefore = rebuilds;
      const value = scanValue(depth + 1);
      if (value === undefined) return undefined;
      valueEnds[i] = pos;
      rebuiltValues[i] = rebuilds === rebuiltBefore ? undefined : value;
      const n = src.charCodeAt(pos++);
      if (n === 0x7d) break;
      if (n !== 0x2c) return undefined;
    }
    if (sorted && rebuilds === before) return src.slice(start, pos);
    return rebuild(base, sorted);
  } finally {
    top = base;
  }
}

/** Compares two plain keys (ASCII: code unit order is code point order) in the source. */
function compareKeys(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  // Both ranges hold their quotes: compare what is between them.
  const la = aEnd - aStart;
  const lb = bEnd - bStart;
  const n = Math.min(la, lb) - 1;
  for (let i = 1; i < n; i++) {
    const d = src.charCodeAt(aStart + i) - src.charCodeAt(bStart + i);
    if (d !== 0) return d;
  }
  return la - lb;
}

function memberText(i: number): string {
  const rebuilt = rebuiltValues[i];
  return rebuilt === undefined
    ? src.slice(keyStarts[i], valueEnds[i])
    : src.slice(keyStarts[i], keyEnds[i] + 1) + rebuilt;
}

/** Scratch for rebuild (not re-entrant: children are rebuilt before their parent starts). */
const order: number[] = [];

/** The members from `base` to the top, in key order (insertion sort: objects here are small). */
function rebuild(base: number, sorted: boolean): string | undefined {
  const count = top - base;
  for (let i = 0; i < count; i++) {
    const m = base + i;
    let j = i - 1;
    if (!sorted) {
      let cmp = 1;
      while (
        j >= 0 &&
        (cmp = compareKeys(keyStarts[order[j]], keyEnds[order[j]], keyStarts[m], keyEnds[m])) > 0
      ) {
        order[j + 1] = order[j];
        j--;
      }
      if (j >= 0 && cmp === 0) return undefined; // a duplicate: the parser decides
    }
    order[j + 1] = m;
  }
  let out = "{" + memberText(order[0]);
  for (let k = 1; k < count; k++) out += "," + memberText(order[k]);
  rebuilds++;
  return out + "}";
}
