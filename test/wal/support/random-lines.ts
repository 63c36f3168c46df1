/**
 * Seeded random WAL lines for the tests that hold a fast path against the lossless parser:
 * payloads with tricky floats, big integers, escapes and unsorted keys, and edits into forms
 * Python would not write (some with a matching hash forged from the text as written).
 */
import { PyFloat, type JsonValue } from "../../../src/json/canonical.js";
import { GENESIS_HASH, buildEntryWithLine, sha256Hex } from "../../../src/wal/entry.js";

const TRICKY_FLOATS = [
  1e21,
  1e16,
  1e-5,
  1e-4,
  0.1,
  0.5,
  -0.0,
  5e-324,
  1.7976931348623157e308,
  1 / 3,
  2 ** 53 + 2,
];

function randomFloat(r: () => number): number | PyFloat {
  const pick = Math.floor(r() * 4);
  if (pick === 0) return new PyFloat(TRICKY_FLOATS[Math.floor(r() * TRICKY_FLOATS.length)]);
  if (pick === 1) return new PyFloat(Math.floor(r() * 1000)); // integral: printed with .0
  if (pick === 2) return 1795744701 + Math.floor(r() * 1e6) / 1e6; // a 16-digit timestamp
  return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
}

function randomString(r: () => number): string {
  const chars = [...'ab_Z9 ~/"\\\n\t\u0001\u007f\u00e9\u2028\u{1F680}'];
  let s = Array.from({ length: Math.floor(r() * 6) }, () => chars[Math.floor(r() * chars.length)]).join("");
  if (r() < 0.1) s += "\ud800"; // a lone surrogate
  return s;
}

function randomValue(r: () => number, depth: number): JsonValue {
  switch (Math.floor(r() * (depth > 2 ? 6 : 8))) {
    case 0:
      return r() < 0.5 ? null : r() < 0.5;
    case 1:
      return Math.floor((r() - 0.5) * 1e6);
    case 2:
      return r() < 0.5 ? 2n ** 64n + BigInt(Math.floor(r() * 1000)) : -(2n ** 70n);
    case 3:
      return randomFloat(r) as JsonValue;
    case 4:
    case 5:
      return randomString(r);
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default:
      return randomObject(r, depth + 1);
  }
}

/** An object whose keys come in random order (the writers keep insertion order). */
export function randomObject(r: () => number, depth: number): Record<string, JsonValue> {
  const obj: Record<string, JsonValue> = {};
  for (let i = Math.floor(r() * 5); i > 0; i--) obj[`k${Math.floor(r() * 50)}`] = randomValue(r, depth);
  return obj;
}

/** Edits a written line into a form Python would not write (or would, for unsorted keys). */
export const EDITS: Array<(line: string, r: () => number) => string> = [
  (l) => l.replace('"committed":', '"committed": '),
  (l) => l.replace(/"k(\d+)":/, '"\\u006b$1":'),
  (l) => l.replace('"decision_type":"t', '"decision_type":"\\u0074'),
  (l) => l.replace(/(\d)\.(\d+)([,}])/, "$1.$20$3"),
  (l) => l.replace(/(\d)\.0([,}])/, "$1$2"),
  (l) => l.replace(/:(\d+)([,}])/, ":$1.0$2"),
  (l) => l.replace(/:(-?[1-9]\d*)([,}])/, ":$1e0$2"),
  (l) => l.replace(/:-0\.0([,}])/, ":-0$1"),
  (l) => l.replace(/\\u00e9/, "\u00e9"),
  (l) => l.replace(/\\ud83d\\ude80/, "\\uD83D\\uDE80"),
  (l) => l.replace(/\\\//, "/").replace("/", "\\/"),
  (l) => l.replace(/\{"(k\d+)":([^{}[\],]+),"(k\d+)":/, '{"$3":$2,"$1":'),
  (l) => l.replace(/"(k\d+)":([^{}[\],]+)([,}])/, '"$1":$2,"$1":$2$3'),
  (l, r) => l.replace("1795744701.", `1795744701.${Math.floor(r() * 10)}`),
];

/** The entry_hash a fast path trusting the text as written would compute (a forgery). */
function forgeFromText(line: string): string {
  const obj = line.slice(0, line.lastIndexOf(',"entry_hash"'));
  const fields = new Map<string, string>();
  const re = /[{,]"(seq|prev_hash|timestamp|decision_type|inputs|output|actor|committed)":/g;
  const starts = [...obj.matchAll(re)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1].index : obj.length;
    fields.set(m[1], obj.slice(m.index + m[0].length, end));
  });
  const body = `{${[...fields.keys()]
    .sort()
    .map((k) => `"${k}":${fields.get(k)}`)
    .join(",")}}`;
  return `${obj},"entry_hash":"${sha256Hex(body)}"}`;
}

/** `damage` scales how often a line is edited or a link broken (1: often, to test the breaks). */
export function randomLines(r: () => number, count: number, damage = 1): string[] {
  const out: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 0; seq < count; seq++) {
    const record = {
      decision_type: r() < 0.5 ? "task_claimed" : "task_completed",
      inputs: randomObject(r, 0),
      output: r() < 0.5 ? {} : randomObject(r, 0),
      committed: r() < 0.5,
    };
    const { entry, line } = buildEntryWithLine(record, seq, prev, 1795744701 + seq * 0.000731);
    let text = line.trimEnd();
    if (r() < 0.4 * damage) {
      const edited = EDITS[Math.floor(r() * EDITS.length)](text, r);
      text = r() < 0.5 ? forgeFromText(edited) : edited;
    }
    out.push(text);
    prev = r() < 1 - 0.03 * damage ? entry.entry_hash : sha256Hex(String(seq)); // now and then a broken link
  }
  return out;
}
