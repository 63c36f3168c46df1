/**
 * The entry of a line readCanonicalLine has just confirmed, built from the token positions it
 * left in `confirmedLine`: the readers that hand out entries pay for the payloads' values only,
 * not for parsing the whole line again. What it builds is `toWalEntry(parseJson(line))`.
 *
 * A confirmed line holds canonical tokens only (no whitespace, no duplicate keys, escapes and
 * numbers as Python writes them), so each field's token parses on its own to what it would
 * inside the line, natively when its numbers allow (see scannedNumbers).
 */
import { parseJson } from "../json/canonical.js";
import { scannedNumbers } from "../json/canonical-scan.js";
import { valueOfCanonicalBytes } from "../json/canonical-value.js";
import { asJsonObject, type JsonObject } from "../json/object.js";
import { CONFIRMED_FIELDS as F, bytesEqualText, confirmedLine } from "./canonical-line.js";
import { walEntry, type WalEntry } from "./entry.js";

const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const T = 0x74;

/** What a caller has already read of the confirmed line with the functions below. */
export interface ConfirmedFacts {
  timestamp: number;
  decisionType: string;
  committed: boolean;
}

/**
 * The entry of the line in `bytes` that readCanonicalLine confirmed last. `prevHash`, when given,
 * is a string the caller already holds with the line's prev_hash (checked equal): it is reused;
 * so are `facts` (checkBatch's visitor has read them for every line).
 */
export function entryOfConfirmedLine(bytes: Buffer, prevHash?: string, facts?: ConfirmedFacts): WalEntry {
  const t = confirmedLine.tokens;
  return walEntry(
    confirmedLine.seq,
    prevHash ?? bytes.toString("latin1", t[2 * F.prev_hash] + 1, t[2 * F.prev_hash + 1] - 1),
    facts ? facts.timestamp : confirmedTimestamp(bytes),
    facts ? facts.decisionType : confirmedDecisionType(bytes),
    payloadOf(bytes, F.inputs),
    payloadOf(bytes, F.output),
    bytes[t[2 * F.actor]] === QUOTE ? stringOf(bytes, F.actor) : "",
    facts ? facts.committed : confirmedCommitted(bytes),
    confirmedLine.hash,
  );
}

/** The timestamp of the line readCanonicalLine confirmed last, as toWalEntry reads it. */
export function confirmedTimestamp(bytes: Buffer): number {
  const t = confirmedLine.tokens;
  return timestampOf(bytes, t[2 * F.timestamp], t[2 * F.timestamp + 1]);
}

/** The decision type of the line readCanonicalLine confirmed last (see entryOfConfirmedLine). */
export function confirmedDecisionType(bytes: Buffer): string {
  return stringOf(bytes, F.decision_type);
}

/**
 * Whether the line readCanonicalLine confirmed last is a commit: its token is `true` (a string
 * would start with a quote).
 */
export function confirmedCommitted(bytes: Buffer): boolean {
  return bytes[confirmedLine.tokens[2 * F.committed]] === T;
}

/**
 * A string token's value: its bytes when it holds no escape (printable ASCII), else parsed. A WAL
 * repeats a few decision types and actors: those strings are shared, not built per line.
 */
function stringOf(bytes: Buffer, field: number): string {
  const t = confirmedLine.tokens;
  const start = t[2 * field];
  const end = t[2 * field + 1];
  if (!confirmedLine.plain[field]) return JSON.parse(bytes.toString("latin1", start, end)) as string;
  const n = end - start - 2;
  if (n === 0 || n > 64) return bytes.toString("latin1", start + 1, end - 1);
  // Direct-mapped by length and the last two characters: one compare per lookup.
  const slot = (n * 31 + bytes[end - 2] * 7 + bytes[end - 3]) & (RECENT.length - 1);
  const known = RECENT[slot];
  if (known !== undefined && bytesEqualText(bytes, start + 1, end - 1, known)) return known;
  return (RECENT[slot] = bytes.toString("latin1", start + 1, end - 1));
}

const RECENT = new Array<string | undefined>(128).fill(undefined);

/** inputs or output as toWalEntry takes them: an object, anything else as `{}`. */
function payloadOf(bytes: Buffer, field: number): JsonObject {
  const t = confirmedLine.tokens;
  const start = t[2 * field];
  const end = t[2 * field + 1];
  if (bytes[start] !== OPEN_BRACE) return {};
  if (end - start === 2 && bytes[start + 1] === CLOSE_BRACE) return {};
  const value = scannedNumbers.jsonParseExact
    ? valueOfCanonicalBytes(bytes, start, end)
    : parseJson(bytes.toString("latin1", start, end));
  return asJsonObject(value) ?? {};
}

/** Integers below this are doubles: m * 10 + d is exact, and a sum past it rounds to it or more. */
const MAX_EXACT = 2 ** 53;
/** 10^k for the k a double holds exactly. */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * toWalEntry's timestamp: a number token as its double; any other token through the parser.
 * A token without exponent whose digits m stay within 2^53 is m / 10^k with both exact, so the
 * division rounds once, to what Number() gives; others take Number() itself.
 */
function timestampOf(bytes: Buffer, start: number, end: number): number {
  let p = start;
  const negative = bytes[p] === 0x2d;
  if (negative) p++;
  const first = bytes[p];
  let m = 0;
  let fraction = -1;
  for (; p < end; p++) {
    const c = bytes[p];
    if (c >= 0x30 && c <= 0x39) m = m * 10 + c - 0x30;
    else if (c === 0x2e && fraction < 0) fraction = p;
    else break;
  }
  if (p === end && m < MAX_EXACT && first >= 0x30 && first <= 0x39) {
    const k = fraction < 0 ? 0 : end - fraction - 1;
    if (k < POWERS_OF_TEN.length) {
      const x = m / POWERS_OF_TEN[k];
      return negative ? -x : x;
    }
  }
  const text = bytes.toString("latin1", start, end);
  if (negative || (first >= 0x30 && first <= 0x39)) return Number(text);
  // A string, null, true, an array...: what toWalEntry makes of the parsed value.
  const value = parseJson(text);
  return typeof value === "number" ? value : Number(value as never);
}
