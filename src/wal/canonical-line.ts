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

// Field numbers in line order (seq is SEQ). The canonical body holds the same fields with their
// keys sorted: each key's text (with its opening `{` or `,`) followed by that field's canonical
// bytes, the line's own bytes unless the scanner rebuilt them.
const PREV = 0;
const TIMESTAMP = 1;
const TYPE = 2;
const INPUTS = 3;
const OUTPUT = 4;
const ACTOR = 5;
const COMMITTED = 6;
const HASH = 7;
const SEQ = 8;
const BODY_FIELDS = [ACTOR, COMMITTED, TYPE, INPUTS, OUTPUT, PREV, SEQ, TIMESTAMP];

// Per field, reused: where its `,"<key>":` (for seq the line's `{"seq":`) and its token are in the
// line, and where its canonical bytes are (in the line, or in the scanner's arena when rebuilt).
const keyStarts = new Array<number>(SEQ + 1).fill(0);
const tokenStarts = new Array<number>(SEQ + 1).fill(0);
const fieldStarts = new Array<number>(SEQ + 1).fill(0);
const fieldEnds = new Array<number>(SEQ + 1).fill(0);
const fieldRebuilt = new Array<boolean>(SEQ + 1).fill(false);

/**
 * The body is assembled in `scratch[0, room)` from a copy of the line at `scratch[room...]`: one
 * copy from the line's buffer, then copyWithin for each run of the line's bytes the body takes
 * as it is (a key with its value, or neighbouring fields: `"actor":..,"committed":..` and
 * `,"decision_type":..,"inputs":..,"output":..` keep their line order), which allocates nothing
 * where copying between two buffers needs a view of the source each time.
 */
let scratch = new Uint8Array(8192);
let room = 4096;
/** Views of the body by length, so hashing a body allocates nothing (dropped when scratch grows). */
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
  keyStarts[SEQ] = start;
  tokenStarts[SEQ] = seqStart;
  for (let i = 0; i < HASH; i++) {
    const sep = SEPARATORS[i];
    if (!startsWith(line, p, end, sep)) return -1;
    keyStarts[i] = p;
    const tokenStart = p + sep.length;
    tokenStarts[i] = tokenStart;
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
  const computed = hash("sha256", canonicalBody(line, start), "hex");
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

/**
 * The canonical body (the entry without entry_hash, keys sorted) of the line at `start`, whose
 * fields readCanonicalLine has just found.
 */
function canonicalBody(line: Buffer, start: number): Uint8Array {
  // committed, the field before entry_hash, ends the part of the line the body is made of; the
  // body is as long as that part and its closing `}`.
  const length = confirmedLine.tokens[2 * COMMITTED + 1] - start;
  if (length + 1 > room) {
    room = Math.max(length + 1, 2 * room);
    scratch = new Uint8Array(2 * room);
    bodyViews = [];
  }
  scratch.set(new Uint8Array(line.buffer, line.byteOffset + start, length), room);
  const shift = room - start;
  const arena = arenaBytes();
  let o = 0;
  // A run of the line's bytes the body takes next, not yet copied: [runFrom, runTo) in the line.
  let runFrom = -1;
  let runTo = -1;
  for (let k = 0; k < BODY_FIELDS.length; k++) {
    const field = BODY_FIELDS[k];
    const keyStart = keyStarts[field];
    if (runFrom < 0 || keyStart !== runTo) {
      // Not next to the run in the line: the key's `,` (or the body's `{`) is written here.
      if (runFrom >= 0) o = copyOfLine(runFrom + shift, runTo + shift, o);
      scratch[o++] = k === 0 ? 0x7b : 0x2c;
      runFrom = keyStart + 1;
    }
    if (fieldRebuilt[field]) {
      o = copyOfLine(runFrom + shift, tokenStarts[field] + shift, o);
      o = copyOfArena(arena, fieldStarts[field], fieldEnds[field], o);
      runFrom = -1;
    } else runTo = fieldEnds[field];
  }
  if (runFrom >= 0) o = copyOfLine(runFrom + shift, runTo + shift, o);
  scratch[o++] = 0x7d;
  return (bodyViews[o] ??= new Uint8Array(scratch.buffer, 0, o));
}

/** Copies `scratch[from, to)` (the line's copy) to `o`; returns where the copy ends. */
function copyOfLine(from: number, to: number, o: number): number {
  if (to - from > 16) scratch.copyWithin(o, from, to);
  else for (let i = from; i < to; i++) scratch[o + i - from] = scratch[i];
  return o + to - from;
}

function copyOfArena(arena: Uint8Array, from: number, to: number, o: number): number {
  if (to - from > 32) scratch.set(new Uint8Array(arena.buffer, arena.byteOffset + from, to - from), o);
  else for (let i = from; i < to; i++) scratch[o + i - from] = arena[i];
  return o + to - from;
}

/** Whether `text` is the bytes `[start, end)` of `bytes` (an ASCII string against ASCII bytes). */
export function bytesEqualText(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[start + i] !== text.charCodeAt(i)) return false;
  return true;
}
