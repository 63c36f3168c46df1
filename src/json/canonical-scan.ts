/**
 * The canonical JSON bytes of a value written with canonical tokens, computed from its bytes
 * alone: no values are built, no text is decoded, an object's members are re-ordered (into a
 * scratch buffer) only when their keys are not sorted. This is the fast path of chain
 * verification; it gives up (returns -1) as soon as the bytes are not provably what
 * `canonicalJson(parseJson(text))` would reproduce token for token, and the caller then takes
 * the lossless parser.
 *
 * Gives up on: whitespace, any byte outside 0x20..0x7E (raw DEL and non-ASCII included), an
 * escape Python's ensure_ascii would not write (`\/`, uppercase hex, `\u0041`, `\u000a`), a key
 * holding an escape, duplicate keys, a number not printed as Python prints it (`1E5`, `1.50`,
 * `-0`, a float digit beyond double precision), NaN/Infinity, nesting beyond 512.
 */
import { isFloatToken, numberTokenEnd, pyFloatRepr } from "./canonical.js";
import { finiteNumberText } from "./number-text.js";

/**
 * Where the canonical bytes of the last value scanned are: its own bytes in the source unless
 * `rebuilt`, then `arenaBytes()[start..end)`; `plainString` when it is a string without escapes
 * (its bytes between the quotes are its value).
 */
export const scanned = { rebuilt: false, start: 0, end: 0, plainString: false };
/** Whether the last string scanned held an escape. */
let escaped = false;

// Scanner state lives at module level (synchronous, not re-entrant), like the parser's.
let src: Buffer = Buffer.alloc(0);
let limit = 0;
let pos = 0;

/** Re-ordered objects (and arrays holding them) are written here; reset by the caller. */
let arena = new Uint8Array(64 * 1024);
let arenaUsed = 0;
/** Past this the scan gives up rather than grow (deeply nested re-ordering): the parser decides. */
const ARENA_MAX = 16 << 20;

/**
 * Whether every number scanned since resetArena() reads as the same value with JSON.parse as
 * with parseJson: no float token with an integral value (parseJson keeps it a PyFloat), no
 * exponent, no integer of more than 15 digits (parseJson keeps an unsafe one a BigInt). With the
 * rest of a canonical value (no duplicate keys, escapes only as Python writes them) JSON.parse
 * then builds what parseJson builds.
 */
export const scannedNumbers = { jsonParseExact: true };

/** Forgets what earlier scans wrote to the arena (call before the values of a new line). */
export function resetArena(): void {
  arenaUsed = 0;
  scannedNumbers.jsonParseExact = true;
}

/** The buffer `scanned` points into when `rebuilt`. */
export function arenaBytes(): Uint8Array {
  return arena;
}

/**
 * Scans the JSON value at `start` in `bytes` (nothing at or after `end` is read). Returns where
 * it ended, `scanned` telling where its canonical bytes are; -1 when the bytes are not provably
 * canonical (see above).
 */
export function scanCanonical(bytes: Buffer, start: number, end: number): number {
  src = bytes;
  limit = end;
  pos = start;
  escaped = true;
  try {
    const r = scanValue(0);
    if (r === NOT_CANONICAL) return -1;
    setScanned(r, start, pos);
    scanned.plainString = bytes[start] === 0x22 && !escaped;
    return pos;
  } finally {
    src = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

// scanValue's result: VERBATIM (the source bytes are canonical), NOT_CANONICAL, or the arena
// offset where its rebuilt bytes start (they end at `rebuiltEnd`).
const VERBATIM = -1;
const NOT_CANONICAL = -2;
let rebuiltEnd = 0;

function setScanned(r: number, start: number, end: number): void {
  scanned.rebuilt = r !== VERBATIM;
  scanned.start = r === VERBATIM ? start : r;
  scanned.end = r === VERBATIM ? end : rebuiltEnd;
}

function at(p: number): number {
  return p < limit ? src[p] : -1;
}

function scanValue(depth: number): number {
  const c = at(pos);
  if (c === 0x22) return scanString() ? VERBATIM : NOT_CANONICAL;
  if (c === 0x7b) return depth < 512 ? scanObject(depth) : NOT_CANONICAL;
  if (c === 0x5b) return depth < 512 ? scanArray(depth) : NOT_CANONICAL;
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return scanNumber() ? VERBATIM : NOT_CANONICAL;
  if (matches(TRUE) || matches(NULL)) pos += 4;
  else if (matches(FALSE)) pos += 5;
  else return NOT_CANONICAL;
  return VERBATIM;
}

const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];

function matches(word: number[]): boolean {
  if (pos + word.length > limit) return false;
  for (let i = 0; i < word.length; i++) if (src[pos + i] !== word[i]) return false;
  return true;
}

/** A byte Python prints as it is inside a string (not `"`, not `\`). */
function isPlain(c: number): boolean {
  return c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c;
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
function unicodeEscapeCanonical(p: number): boolean {
  let code = 0;
  for (let i = p; i < p + 4; i++) {
    const h = hexValue(at(i));
    if (h < 0) return false;
    code = code * 16 + h;
  }
  if (code >= 0x20 && code <= 0x7e) return false;
  return !(code === 0x0a || code === 0x0d || code === 0x09 || code === 0x08 || code === 0x0c);
}

/** Moves past the string literal at `pos`; false when it is not written as Python writes it. */
function scanString(): boolean {
  let p = pos + 1;
  escaped = false;
  while (p < limit) {
    const c = src[p];
    if (isPlain(c)) {
      p++;
      continue;
    }
    if (c === 0x22) {
      pos = p + 1;
      return true;
    }
    if (c !== 0x5c) return false;
    escaped = true;
    const e = at(p + 1);
    if (e === 0x75) {
      if (!unicodeEscapeCanonical(p + 2)) return false;
      p += 6;
    } else if (shortEscapeCanonical(e)) p += 2;
    else return false;
  }
  return false;
}

/** The end (after the closing quote) of a string literal at `start` without escapes, or -1. */
function plainStringEnd(start: number): number {
  if (at(start) !== 0x22) return -1;
  let p = start + 1;
  while (p < limit && isPlain(src[p])) p++;
  return at(p) === 0x22 ? p + 1 : -1;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Moves past the number at `pos`; false when it is not printed as Python prints it. */
function scanNumber(): boolean {
  const start = pos;
  let p = start;
  if (src[p] === 0x2d) p++;
  const intStart = p;
  if (at(p) === 0x30) p++;
  else if (isDigit(at(p))) while (isDigit(at(p))) p++;
  else return false;
  const intEnd = p;
  if (at(p) !== 0x2e) {
    const e = at(p);
    if (e === 0x65 || e === 0x45) return scanNumberSlowly(start);
    if (intEnd - intStart > 15) scannedNumbers.jsonParseExact = false;
    pos = p;
    // An int prints as its digits; the integer -0 is Python's 0.
    return !(intEnd - start === 2 && src[start] === 0x2d && src[intStart] === 0x30);
  }
  p++;
  const fracStart = p;
  while (isDigit(at(p))) p++;
  const e = at(p);
  if (p === fracStart || e === 0x65 || e === 0x45) return scanNumberSlowly(start);
  if (!positionalReprAt(intStart, intEnd, fracStart, p) && !positionalRepr(src.toString("latin1", start, p)))
    return false;
  // Python prints an integral float positionally with the fraction `.0`, and nothing else so.
  if (p - fracStart === 1 && src[fracStart] === 0x30) scannedNumbers.jsonParseExact = false;
  pos = p;
  return true;
}

/**
 * Whether digits `int.frac` are how Python's repr prints their double, decided from the digits
 * alone for the common cases (else false, and the caller checks the slow way). repr prints the
 * shortest digits that read back as the double (the nearest such), positionally for
 * 1e-4 <= |x| < 1e16, with no trailing zero but the one of `.0`. The digits are those when no
 * other decimal as short reads as the same double:
 *  - at most 15 significant digits: a decimal is the only one of that length reading as its
 *    double (DBL_DIG);
 *  - 16 digits M (scaled by u, the last digit's unit) with 1.1e15 <= M < 2^51: every other
 *    decimal of at most 16 digits is at least u away, while the double's spacing is below u/2,
 *    so only these digits read as it (timestamps such as 1795744701.123456 are here).
 * Zero is left to the slow check.
 */
function positionalReprAt(intStart: number, intEnd: number, fracStart: number, fracEnd: number): boolean {
  const fracLen = fracEnd - fracStart;
  const lastFrac = src[fracEnd - 1];
  let first = intStart; // where the significant digits start
  if (src[intStart] === 0x30) {
    // 0.000ddd: at most three zeros before the first digit (>= 1e-4).
    let lead = 0;
    while (lead < fracLen && src[fracStart + lead] === 0x30) lead++;
    if (lead === fracLen || lead > 3) return false;
    first = fracStart + lead;
  } else {
    const intLen = intEnd - intStart;
    if (intLen > 16) return false;
    if (fracLen === 1 && lastFrac === 0x30) {
      // An integral value: its significant digits are the integer part without trailing zeros.
      let sig = intLen;
      while (sig > 1 && src[intStart + sig - 1] === 0x30) sig--;
      return sig <= 15;
    }
  }
  if (lastFrac === 0x30) return false;
  const digits = (first < intEnd ? intEnd - first : 0) + fracEnd - Math.max(first, fracStart);
  if (digits <= 15) return true;
  if (digits > 16) return false;
  let m = 0;
  for (let i = first; i < fracEnd; i++) if (i !== intEnd) m = m * 10 + src[i] - 0x30;
  return m >= 1.1e15 && m < 2 ** 51;
}

/** Whether a positional float token is repr of its double (zero, 16 or 17 significant digits). */
function positionalRepr(token: string): boolean {
  const x = Number(token);
  // Where JS and Python both print positionally, String(x) is repr(x) for a fractional x.
  const ax = Math.abs(x);
  if (ax >= 1e-4 && ax < 1e16 && finiteNumberText(x) === token) return true;
  return pyFloatRepr(x) === token;
}

/** A number with an exponent (or a `.` without digits): compared with repr of its double. */
function scanNumberSlowly(start: number): boolean {
  scannedNumbers.jsonParseExact = false;
  const text = src.toString("latin1", start, Math.min(limit, start + 64));
  const end = numberTokenEnd(text, 0);
  if (end < 0) return false;
  const next = text.charCodeAt(end);
  // A `.` or exponent the token left unread is not JSON: the parser names it.
  if (next === 0x2e || next === 0x65 || next === 0x45) return false;
  const token = text.slice(0, end);
  if (!isFloatToken(token)) return false; // over 64 digits: the parser decides
  const x = Number(token);
  if (!Number.isFinite(x) || pyFloatRepr(x) !== token) return false;
  pos = start + end;
  return true;
}

// Members (or items) of the objects and arrays being scanned, shared by all levels (a stack):
// where each key and value start and end, and where a rebuilt value is in the arena (-1: none).
const keyStarts: number[] = [];
const keyEnds: number[] = [];
const valueStarts: number[] = [];
const valueEnds: number[] = [];
const rebuiltStarts: number[] = [];
const rebuiltEnds: number[] = [];
let top = 0;

/** Scans one value onto the stack; false when it is not canonical. */
function pushValue(depth: number, keyStart: number, keyEnd: number): boolean {
  const i = top++;
  keyStarts[i] = keyStart;
  keyEnds[i] = keyEnd;
  valueStarts[i] = pos;
  const r = scanValue(depth + 1);
  if (r === NOT_CANONICAL) return false;
  valueEnds[i] = pos;
  rebuiltStarts[i] = r;
  rebuiltEnds[i] = r === VERBATIM ? -1 : rebuiltEnd;
  return true;
}

function scanArray(depth: number): number {
  pos++;
  if (at(pos) === 0x5d) {
    pos++;
    return VERBATIM;
  }
  const base = top;
  let anyRebuilt = false;
  try {
    while (true) {
      if (!pushValue(depth, -1, -1)) return NOT_CANONICAL;
      if (rebuiltStarts[top - 1] !== VERBATIM) anyRebuilt = true;
      const n = at(pos++);
      if (n === 0x5d) break;
      if (n !== 0x2c) return NOT_CANONICAL;
    }
    return anyRebuilt ? rebuild(base, 0x5b, 0x5d) : VERBATIM;
  } finally {
    top = base;
  }
}

function scanObject(depth: number): number {
  pos++;
  if (at(pos) === 0x7d) {
    pos++;
    return VERBATIM;
  }
  const base = top;
  let sorted = true;
  let anyRebuilt = false;
  try {
    while (true) {
      const keyStart = pos;
      const keyEnd = plainStringEnd(pos);
      if (keyEnd < 0 || at(keyEnd) !== 0x3a) return NOT_CANONICAL;
      if (top > base) {
        const order = compareKeys(top - 1, keyStart, keyEnd);
        if (order === 0) return NOT_CANONICAL; // a duplicate: the parser decides
        if (order > 0) sorted = false;
      }
      pos = keyEnd + 1;
      if (!pushValue(depth, keyStart, keyEnd)) return NOT_CANONICAL;
      if (rebuiltStarts[top - 1] !== VERBATIM) anyRebuilt = true;
      const n = at(pos++);
      if (n === 0x7d) break;
      if (n !== 0x2c) return NOT_CANONICAL;
    }
    if (sorted && !anyRebuilt) return VERBATIM;
    if (!sorted && !sortMembers(base)) return NOT_CANONICAL;
    return rebuild(base, 0x7b, 0x7d);
  } finally {
    top = base;
  }
}

/** Compares the key of member `m` with the key at `start..end` (ASCII: byte order is code point order). */
function compareKeys(m: number, start: number, end: number): number {
  // Both ranges hold their quotes: compare what is between them.
  const a = keyStarts[m];
  const la = keyEnds[m] - a;
  const lb = end - start;
  const n = Math.min(la, lb) - 1;
  for (let i = 1; i < n; i++) {
    const d = src[a + i] - src[start + i];
    if (d !== 0) return d;
  }
  return la - lb;
}

/** Sorts the members from `base` to the top by key (insertion sort: objects here are small). */
function sortMembers(base: number): boolean {
  for (let i = base + 1; i < top; i++) {
    let j = i - 1;
    let cmp = 1;
    while (j >= base && (cmp = compareKeys(j, keyStarts[i], keyEnds[i])) > 0) j--;
    if (j >= base && cmp === 0) return false; // a duplicate: the parser decides
    if (j + 1 === i) continue;
    // Member i moves down to j + 1 through the free slot at `top` (the stack's scratch).
    moveMember(i, top);
    for (let k = i; k > j + 1; k--) moveMember(k - 1, k);
    moveMember(top, j + 1);
  }
  return true;
}

function moveMember(from: number, to: number): void {
  keyStarts[to] = keyStarts[from];
  keyEnds[to] = keyEnds[from];
  valueStarts[to] = valueStarts[from];
  valueEnds[to] = valueEnds[from];
  rebuiltStarts[to] = rebuiltStarts[from];
  rebuiltEnds[to] = rebuiltEnds[from];
}

/** Writes the members (keys when they have one) from `base` up, in stack order, to the arena. */
function rebuild(base: number, open: number, close: number): number {
  let need = 2;
  for (let i = base; i < top; i++) {
    const value =
      rebuiltStarts[i] === VERBATIM ? valueEnds[i] - valueStarts[i] : rebuiltEnds[i] - rebuiltStarts[i];
    need += keyEnds[i] - keyStarts[i] + 2 + value;
  }
  if (!reserve(need)) return NOT_CANONICAL;
  const start = arenaUsed;
  let o = start;
  arena[o++] = open;
  for (let i = base; i < top; i++) {
    if (i > base) arena[o++] = 0x2c;
    if (keyStarts[i] >= 0) {
      o = copyBytes(src, keyStarts[i], keyEnds[i], o);
      arena[o++] = 0x3a;
    }
    o =
      rebuiltStarts[i] === VERBATIM
        ? copyBytes(src, valueStarts[i], valueEnds[i], o)
        : copyBytes(arena, rebuiltStarts[i], rebuiltEnds[i], o);
  }
  arena[o++] = close;
  arenaUsed = o;
  rebuiltEnd = o;
  return start;
}

/** Room for `n` more bytes in the arena (grown, what it holds kept); false past ARENA_MAX. */
function reserve(n: number): boolean {
  const want = arenaUsed + n;
  if (want <= arena.length) return true;
  if (want > ARENA_MAX) return false;
  const bigger = new Uint8Array(Math.min(ARENA_MAX, Math.max(want, arena.length * 2)));
  bigger.set(arena.subarray(0, arenaUsed));
  arena = bigger;
  return true;
}

function copyBytes(from: Uint8Array, start: number, end: number, o: number): number {
  if (end - start > 32) {
    arena.set(new Uint8Array(from.buffer, from.byteOffset + start, end - start), o);
    return o + end - start;
  }
  for (let i = start; i < end; i++) arena[o++] = from[i];
  return o;
}
