/**
 * The fast path of chain verification: a WAL line provably in the form the writers print (the
 * standard fields in line order, every token canonical, plain ASCII hashes) is hashed from its
 * own bytes, its fields' bytes re-ordered into the canonical body, without decoding the line or
 * building values.
 *
 * It only ever confirms: a line it cannot prove canonical, or whose hash, seq or link does not
 * check out, goes through the lossless parser, which decides and names the problem. A wrong
 * body here could only make the hash differ, so the verdicts are the parser's.
 */
import { hash } from "node:crypto";
import { arenaBytes, resetArena, scanCanonical, scanned } from "../json/canonical-scan.js";

/**
 * The chain fields of the last line readCanonicalLine confirmed, as positions in its bytes:
 * prev_hash is `[prevStart, prevEnd)` (no quotes), entry_hash the 64 bytes at `hashStart` (`hash`
 * as a string).
 * The line ends at `end` (just after its `}`). `tokens` holds where each field's token is in the line, `[tokens[2f], tokens[2f + 1])` for
 * field f of CONFIRMED_FIELDS (quotes included); `plain` whether a string token holds no escape.
 */
export const confirmedLine = {
  seq: 0,
  end: 0,
  prevStart: 0,
  prevEnd: 0,
  hashStart: 0,
  hash: "",
  tokens: new Int32Array(16),
  plain: [false, false, false, false, false, false, false, false],
};

/** The fields after seq in line order: indexes into confirmedLine.tokens and .plain. */
export const CONFIRMED_FIELDS = {
  prev_hash: 0,
  timestamp: 1,
  decision_type: 2,
  inputs: 3,
  output: 4,
  actor: 5,
  committed: 6,
  entry_hash: 7,
} as const;

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

const OPEN_SEQ = ascii('{"seq":');

/** `,"<field>":` of the fields after seq, in line order. */
const SEPARATORS = [
  ',"prev_hash":',
  ',"timestamp":',
  ',"decision_type":',
  ',"inputs":',
  ',"output":',
  ',"actor":',
  ',"committed":',
  ',"entry_hash":',
].map(ascii);

// Field numbers in line order (seq is SEQ), and the canonical body: sorted keys, each key's
// text (with its opening `{` or `,`) followed by that field's canonical bytes.
const PREV = 0;
const TIMESTAMP = 1;
const TYPE = 2;
const INPUTS = 3;
const OUTPUT = 4;
const ACTOR = 5;
const COMMITTED = 6;
const HASH = 7;
const SEQ = 8;
const BODY_KEYS = [
  '{"actor":',
  ',"committed":',
  ',"decision_type":',
  ',"inputs":',
  ',"output":',
  ',"prev_hash":',
  ',"seq":',
  ',"timestamp":',
].map(ascii);
const BODY_FIELDS = [ACTOR, COMMITTED, TYPE, INPUTS, OUTPUT, PREV, SEQ, TIMESTAMP];

// Where each field's canonical bytes are (in the line, or in the scanner's arena), reused.
const fieldStarts = new Array<number>(SEQ + 1).fill(0);
const fieldEnds = new Array<number>(SEQ + 1).fill(0);
const fieldRebuilt = new Array<boolean>(SEQ + 1).fill(false);

let body = new Uint8Array(4096);
/** Views of `body` by length, so hashing a body allocates nothing (dropped when body grows). */
let bodyViews: Uint8Array[] = [];

/**
 * Reads the line at `start` (nothing at or after `end` is read) as a standard WAL entry with
 * canonical tokens and checks its entry_hash against its canonical body. Returns where the line
 * ends (just after its closing `}`) when it is one and its hash is right, `confirmedLine` then
 * holding its chain fields; -1 otherwise (the caller then parses it).
 */
export function readCanonicalLine(line: Buffer, start: number, end: number): number {
  if (!startsWith(line, start, end, OPEN_SEQ)) return -1;
  resetArena();
  // seq: a plain non-negative integer the parser keeps as a number.
  let p = start + OPEN_SEQ.length;
  const seqStart = p;
  let seq = 0;
  while (p < end && line[p] >= 0x30 && line[p] <= 0x39) seq = seq * 10 + line[p++] - 0x30;
  const seqLen = p - seqStart;
  if (seqLen === 0 || seqLen > 15 || (seqLen > 1 && line[seqStart] === 0x30)) return -1;
  setField(SEQ, seqStart, p, false);
  for (let i = 0; i < HASH; i++) {
    const sep = SEPARATORS[i];
    if (!startsWith(line, p, end, sep)) return -1;
    const tokenStart = p + sep.length;
    p = scanCanonical(line, tokenStart, end);
    if (p < 0) return -1;
    setField(i, scanned.start, scanned.end, scanned.rebuilt);
    confirmedLine.tokens[2 * i] = tokenStart;
    confirmedLine.tokens[2 * i + 1] = p;
    confirmedLine.plain[i] = scanned.plainString;
  }
  // entry_hash: 64 bytes between quotes, compared below with the computed hex (plain ASCII).
  if (!startsWith(line, p, end, SEPARATORS[HASH])) return -1;
  p += SEPARATORS[HASH].length;
  if (p + 66 >= end || line[p] !== 0x22 || line[p + 65] !== 0x22) return -1;
  setField(HASH, p, p + 66, false);
  p += 66;
  if (p >= end || line[p] !== 0x7d) return -1;
  // The hashes and the type must be strings; the hashes are compared as written, so no escapes.
  if (!confirmedLine.plain[PREV] || line[fieldStarts[TYPE]] !== 0x22) return -1;
  const computed = hash("sha256", canonicalBody(line), "hex");
  const hashStart = fieldStarts[HASH] + 1;
  if (!bytesEqualText(line, hashStart, hashStart + 64, computed)) return -1;
  confirmedLine.hash = computed;
  confirmedLine.seq = seq;
  confirmedLine.prevStart = fieldStarts[PREV] + 1;
  confirmedLine.prevEnd = fieldEnds[PREV] - 1;
  confirmedLine.hashStart = hashStart;
  confirmedLine.tokens[2 * HASH] = hashStart - 1;
  confirmedLine.tokens[2 * HASH + 1] = hashStart + 65;
  confirmedLine.plain[HASH] = true;
  confirmedLine.end = p + 1;
  return p + 1;
}

function setField(field: number, start: number, end: number, rebuilt: boolean): void {
  fieldStarts[field] = start;
  fieldEnds[field] = end;
  fieldRebuilt[field] = rebuilt;
}

function startsWith(line: Uint8Array, p: number, end: number, word: Uint8Array): boolean {
  if (p + word.length > end) return false;
  for (let i = 0; i < word.length; i++) if (line[p + i] !== word[i]) return false;
  return true;
}

/** The canonical body (the entry without entry_hash, keys sorted) in `body`. */
function canonicalBody(line: Buffer): Uint8Array {
  let need = 1;
  for (let k = 0; k < BODY_FIELDS.length; k++)
    need += BODY_KEYS[k].length + fieldEnds[BODY_FIELDS[k]] - fieldStarts[BODY_FIELDS[k]];
  if (need > body.length) {
    body = new Uint8Array(Math.max(need, body.length * 2));
    bodyViews = [];
  }
  const arena = arenaBytes();
  let o = 0;
  for (let k = 0; k < BODY_FIELDS.length; k++) {
    const key = BODY_KEYS[k];
    for (let i = 0; i < key.length; i++) body[o++] = key[i];
    const field = BODY_FIELDS[k];
    const from = fieldRebuilt[field] ? arena : line;
    const s = fieldStarts[field];
    const e = fieldEnds[field];
    if (e - s > 32) {
      body.set(new Uint8Array(from.buffer, from.byteOffset + s, e - s), o);
      o += e - s;
    } else for (let i = s; i < e; i++) body[o++] = from[i];
  }
  body[o++] = 0x7d;
  return (bodyViews[o] ??= new Uint8Array(body.buffer, 0, o));
}

/** Whether `text` is the bytes `[start, end)` of `bytes` (an ASCII string against ASCII bytes). */
export function bytesEqualText(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[start + i] !== text.charCodeAt(i)) return false;
  return true;
}
