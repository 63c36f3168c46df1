/**
 * Both JSON texts of one value in one pass: the canonical one (`canonicalJson`: sorted keys,
 * compact, ASCII) and the one in the objects' own key order (`orderedJson`). A WAL entry needs
 * both of its payloads — the sorted text is hashed, the ordered one is the line — and every
 * string, number and key is serialized once here where the two functions would do it twice.
 * Where an object's keys are already sorted and nothing inside it differs, the two texts are
 * the same string.
 */
import { compareCodePoints, isContainer, pyStringLiteral, scalarText } from "./canonical.js";

export interface JsonPair {
  canonical: string;
  ordered: string;
}

/** `{ canonical: canonicalJson(value), ordered: orderedJson(value) }` with compact separators. */
export function canonicalAndOrdered(value: unknown): JsonPair {
  const canonical = writePair(value);
  return { canonical, ordered: sameText ? canonical : orderedText };
}

// The recursion returns the canonical text and leaves the ordered one here: no object per value.
// `sameText`: the ordered text is the canonical one (orderedText is then not set).
let orderedText = "";
let sameText = true;

function writePair(value: unknown): string {
  sameText = true;
  if (!isContainer(value)) return scalarText(value);
  if (Array.isArray(value)) return writeArrayPair(value);
  return writeObjectPair(value as Record<string, unknown>);
}

function writeArrayPair(arr: unknown[]): string {
  let canonical = "[";
  // Undefined while every element's two texts are the same string.
  let ordered: string | undefined;
  for (let i = 0; i < arr.length; i++) {
    const sep = i > 0 ? "," : "";
    const c = writePair(arr[i]);
    if (!sameText && ordered === undefined) ordered = canonical;
    if (ordered !== undefined) ordered += sep + (sameText ? c : orderedText);
    canonical += sep + c;
  }
  sameText = ordered === undefined;
  if (ordered !== undefined) orderedText = ordered + "]";
  return canonical + "]";
}

function writeObjectPair(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  // `pieces[i]`: `"key":value` in canonical form, for the keys whose value is not undefined.
  const pieces: string[] = [];
  // The keys of `pieces`, made only once a member is left out (until then: `keys`).
  let present: string[] | undefined;
  let ordered = "{";
  let allSame = true;
  let asciiKeys = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const v = obj[k];
    if (v === undefined) {
      present ??= keys.slice(0, i);
      continue;
    }
    const literal = pyStringLiteral(k);
    // Longer than the key plus its quotes: it holds an escape, so it may not sort as UTF-16 does.
    if (literal.length !== k.length + 2) asciiKeys = false;
    const head = literal + ":";
    const c = writePair(v);
    const piece = head + c;
    ordered += (pieces.length > 0 ? "," : "") + (sameText ? piece : head + orderedText);
    if (!sameText) allSame = false;
    pieces.push(piece);
    present?.push(k);
  }
  ordered += "}";
  const order = sortedOrder(present ?? keys, asciiKeys);
  if (order === undefined && allSame) {
    sameText = true;
    return ordered;
  }
  let canonical = "{";
  for (let i = 0; i < pieces.length; i++) {
    canonical += (i > 0 ? "," : "") + pieces[order === undefined ? i : order[i]];
  }
  sameText = false;
  orderedText = ordered;
  return canonical + "}";
}

/**
 * The indices of `keys` in code-point order, or undefined when they already are in it.
 * Keys printable ASCII compare as UTF-16 strings do; others by code point (Python's str order).
 */
function sortedOrder(keys: string[], ascii: boolean): number[] | undefined {
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) {
    sorted = keyBefore(keys[i - 1], keys[i], ascii);
  }
  if (sorted) return undefined;
  const order = new Array<number>(keys.length);
  for (let i = 0; i < keys.length; i++) order[i] = i;
  if (keys.length > 16) {
    return order.sort((a, b) => (keyBefore(keys[b], keys[a], ascii) ? 1 : -1));
  }
  // Insertion sort, no closure: a payload object has a handful of keys.
  for (let i = 1; i < order.length; i++) {
    const o = order[i];
    let j = i - 1;
    while (j >= 0 && keyBefore(keys[o], keys[order[j]], ascii)) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = o;
  }
  return order;
}

function keyBefore(a: string, b: string, ascii: boolean): boolean {
  return ascii ? a < b : compareCodePoints(a, b) < 0;
}
