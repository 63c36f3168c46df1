/**
 * The fast path of chain verification: a WAL line provably in the form the writers print (the
 * standard fields in line order, every token canonical, plain ASCII hashes) is hashed from its
 * own text, its fields' texts re-ordered into the canonical body, without building values.
 *
 * It only ever confirms: a line it cannot prove canonical, or whose hash, seq or link does not
 * check out, goes through the lossless parser, which decides and names the problem. A wrong
 * body here could only make the hash differ, so the verdicts are the parser's.
 */
import { hash } from "node:crypto";
import { canonicalTextAt, scannedTo } from "../json/canonical-scan.js";

/** What a canonical line holds: its chain fields and the hash of its canonical body. */
export interface CanonicalLine {
  seq: number;
  prevHash: string;
  entryHash: string;
  /** sha256 hex of the canonical body: the line is valid on its own when it equals entryHash. */
  computed: string;
}

const OPEN_SEQ = '{"seq":';

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
] as const;

/** The texts of the fields after seq, reused from line to line. */
const texts: string[] = new Array<string>(SEPARATORS.length);

/** A canonical string token without escapes: its text between the quotes is its value. */
function isPlainString(token: string): boolean {
  return token.charCodeAt(0) === 0x22 && token.indexOf("\\") === -1;
}

/**
 * Reads an ASCII line (without its newline) as a standard WAL entry with canonical tokens;
 * undefined when it is not provably one (the caller then parses it).
 */
export function readCanonicalLine(line: string): CanonicalLine | undefined {
  if (!line.startsWith(OPEN_SEQ)) return undefined;
  // seq: a plain non-negative integer the parser keeps as a number.
  let p = OPEN_SEQ.length;
  const seqStart = p;
  while (p < line.length && line.charCodeAt(p) >= 0x30 && line.charCodeAt(p) <= 0x39) p++;
  const seqLen = p - seqStart;
  if (seqLen === 0 || seqLen > 15 || (seqLen > 1 && line.charCodeAt(seqStart) === 0x30)) return undefined;
  const seqText = line.slice(seqStart, p);
  for (let i = 0; i < SEPARATORS.length; i++) {
    const sep = SEPARATORS[i];
    if (!line.startsWith(sep, p)) return undefined;
    p += sep.length;
    const text = canonicalTextAt(line, p);
    if (text === undefined) return undefined;
    p = scannedTo();
    texts[i] = text;
  }
  if (p !== line.length - 1 || line.charCodeAt(p) !== 0x7d) return undefined;
  const [prev, timestamp, type, inputs, output, actor, committed, entryHash] = texts;
  // The hashes and the type must be strings; the hashes are compared as written, so no escapes.
  if (!isPlainString(prev) || !isPlainString(entryHash) || type.charCodeAt(0) !== 0x22) return undefined;
  const body =
    `{"actor":${actor},"committed":${committed},"decision_type":${type},"inputs":${inputs},` +
    `"output":${output},"prev_hash":${prev},"seq":${seqText},"timestamp":${timestamp}}`;
  return {
    seq: Number(seqText),
    prevHash: prev.slice(1, -1),
    entryHash: entryHash.slice(1, -1),
    computed: hash("sha256", body, "hex"),
  };
}
