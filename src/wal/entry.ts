/**
 * The WAL entry: its fields, its hash and its line, byte-compatible with the Python reference.
 *
 * entry_hash = sha256 hex of the canonical JSON (sorted keys, compact, ASCII) of the entry
 * without `entry_hash`; the line is the same object in field order (`WAL_FIELDS`), compact.
 */
import { hash } from "node:crypto";
import {
  PyFloat,
  canonicalJson,
  orderedJson,
  parseJsonCheckingTokens,
  pyFloatRepr,
  pyStringLiteral,
  type JsonValue,
} from "../json/canonical.js";
import { canonicalAndOrdered } from "../json/canonical-pair.js";
import { asJsonObject, type JsonObject } from "../json/object.js";

/** `prev_hash` of seq 0. */
export const GENESIS_HASH = "0".repeat(64);

/** Field order of a WAL line. */
export const WAL_FIELDS = [
  "seq",
  "prev_hash",
  "timestamp",
  "decision_type",
  "inputs",
  "output",
  "actor",
  "committed",
  "entry_hash",
] as const;

export type { JsonObject };

export interface WalEntry {
  seq: number;
  prev_hash: string;
  /** Epoch seconds (a float, like Python's time.time()). */
  timestamp: number;
  decision_type: string;
  inputs: JsonObject;
  output: JsonObject;
  actor: string;
  /** false: an intent (the action may not have happened); true: the commit with its results. */
  committed: boolean;
  entry_hash: string;
}

/** What a caller gives to `append()`; the writer fills seq, prev_hash, timestamp and entry_hash. */
export interface WalRecord {
  decision_type: string;
  inputs: JsonObject;
  output?: JsonObject;
  actor?: string;
  committed: boolean;
}

/** A position in a run's WAL: the newest entry's seq and hash. */
export interface WalPosition {
  runId: string;
  seq: number;
  entry_hash: string;
}

export const DEFAULT_ACTOR = "orchestrator";

/**
 * An entry's time (epoch seconds, as its `timestamp`) in whole epoch ms, truncated as a Date
 * truncates it: the instant every printed time shows and every cut by time compares, so an
 * instant printed for an entry and given back to `--at` holds that entry. (Rounding here let a
 * cut leave out the entry whose printed time it was given.)
 */
export function entryTimeMs(timestampSeconds: number): number {
  return Math.floor(timestampSeconds * 1000);
}

/** The timestamp as Python sees it: always a float, so an integral one prints as `123.0`. */
function pyTimestamp(ts: number): number | PyFloat {
  return Number.isInteger(ts) ? new PyFloat(ts) : ts;
}

/** sha256 hex of a string's UTF-8 bytes (canonical JSON is ASCII). */
export function sha256Hex(text: string): string {
  return hash("sha256", text, "hex");
}

/** The hash of an entry we hold as a typed WalEntry (entry_hash ignored). */
export function computeEntryHash(e: Omit<WalEntry, "entry_hash">): string {
  return sha256Hex(bodyAndLine(e).body);
}

/**
 * The canonical body (what is hashed) and the line prefix (fields in line order, up to
 * `entry_hash`) of an entry, each field serialized once: the writer's hot path. The payloads
 * give both their texts in one pass; the timestamp is always a Python float.
 */
function bodyAndLine(e: Omit<WalEntry, "entry_hash">): { body: string; linePrefix: string } {
  const seq = String(e.seq);
  const prev = pyStringLiteral(e.prev_hash);
  const ts = pyFloatRepr(e.timestamp);
  const type = pyStringLiteral(e.decision_type);
  const actor = pyStringLiteral(e.actor);
  const committed = e.committed ? "true" : "false";
  const inputs = canonicalAndOrdered(e.inputs);
  const output = canonicalAndOrdered(e.output);
  const body =
    `{"actor":${actor},"committed":${committed},"decision_type":${type},"inputs":${inputs.canonical},` +
    `"output":${output.canonical},"prev_hash":${prev},"seq":${seq},"timestamp":${ts}}`;
  const linePrefix =
    `{"seq":${seq},"prev_hash":${prev},"timestamp":${ts},"decision_type":${type},"inputs":${inputs.ordered},` +
    `"output":${output.ordered},"actor":${actor},"committed":${committed}`;
  return { body, linePrefix };
}

/**
 * The hash of an entry as parsed from a line (the lossless value, any extra fields included,
 * `entry_hash` left out): what the Python reference computes when it verifies.
 */
export function hashOfParsedEntry(raw: JsonObject): string {
  return sha256Hex(canonicalEntryBody(raw));
}

/** Sorted order of the hashed fields: the canonical form of a standard entry. */
const SORTED_BODY_FIELDS = WAL_FIELDS.filter((f) => f !== "entry_hash").sort();
/** Where each field of WAL_FIELDS lands in the sorted body. */
const SORTED_SLOT = WAL_FIELDS.map((f) =>
  SORTED_BODY_FIELDS.indexOf(f as (typeof SORTED_BODY_FIELDS)[number]),
);

function hasStandardFields(raw: JsonObject): boolean {
  const keys = Object.keys(raw);
  if (keys.length !== WAL_FIELDS.length) return false;
  for (let i = 0; i < keys.length; i++) if (keys[i] !== WAL_FIELDS[i]) return false;
  return true;
}

/**
 * Canonical JSON of a parsed entry without `entry_hash`. An entry with exactly the standard
 * fields in line order (every line we or Python write) takes a fast path with the sort done
 * once; anything else goes through the generic serializer. Both give canonicalJson's output.
 */
export function canonicalEntryBody(raw: JsonObject): string {
  if (!hasStandardFields(raw)) {
    const { entry_hash: _ignored, ...rest } = raw;
    return canonicalJson(rest);
  }
  let out = "{";
  for (let i = 0; i < SORTED_BODY_FIELDS.length; i++) {
    const f = SORTED_BODY_FIELDS[i];
    out += (i === 0 ? '"' : ',"') + f + '":' + canonicalJson(raw[f]);
  }
  return out + "}";
}

export interface EntryDigest {
  /** sha256 hex of the canonical body: must equal the stored entry_hash. */
  hash: string;
  /**
   * Whether the line is exactly what the writer (ours or Python's) prints for the parsed value.
   * The hash covers the parsed value, so a byte can change without changing it (a float digit
   * beyond double precision: 1.8944087 and 1.8944086 are the same double); this catches that.
   */
  exact: boolean;
}

/**
 * Hash of a parsed line and whether the line is byte-exact (see EntryDigest). `tokensCanonical`
 * (from parseJsonCheckingTokens on an ASCII line) spares rebuilding the line: with the standard
 * fields in order and every token as Python writes it, the line is exact by construction.
 */
export function digestParsedEntry(raw: JsonObject, line: string, tokensCanonical = false): EntryDigest {
  if (!hasStandardFields(raw)) {
    return { hash: sha256Hex(canonicalEntryBody(raw)), exact: orderedJson(inFieldOrder(raw)) === line };
  }
  if (tokensCanonical) return { hash: sha256Hex(canonicalEntryBody(raw)), exact: true };
  // Each field is serialized once and the pieces serve both the sorted body and the line;
  // objects and arrays also need their line order (nested keys are not sorted in a line).
  const sorted: string[] = new Array(SORTED_BODY_FIELDS.length);
  let ordered = "{";
  for (let i = 0; i < WAL_FIELDS.length; i++) {
    const f = WAL_FIELDS[i];
    const v = raw[f];
    const canon = canonicalJson(v);
    const slot = SORTED_SLOT[i];
    if (slot >= 0) sorted[slot] = canon;
    const asWritten = typeof v === "object" && v !== null && !(v instanceof PyFloat) ? orderedJson(v) : canon;
    ordered += (i === 0 ? '"' : ',"') + f + '":' + asWritten;
  }
  let body = "{";
  for (let i = 0; i < SORTED_BODY_FIELDS.length; i++) {
    body += (i === 0 ? '"' : ',"') + SORTED_BODY_FIELDS[i] + '":' + sorted[i];
  }
  return { hash: sha256Hex(body + "}"), exact: ordered + "}" === line };
}

/**
 * The parsed entry as a writer puts it back: the standard fields in line order, then any other
 * field in its own order. A JS object keeps the line's key order, so writing `raw` back as it is
 * would call a line with its fields reordered exact.
 */
function inFieldOrder(raw: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const f of WAL_FIELDS) if (Object.hasOwn(raw, f)) out[f] = raw[f];
  for (const k of Object.keys(raw)) if (!Object.hasOwn(out, k)) setOwn(out, k, raw[k]);
  return out;
}

function setOwn(obj: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The WAL line of an entry, with its trailing newline. */
export function entryLine(e: WalEntry): string {
  return (
    orderedJson({
      seq: e.seq,
      prev_hash: e.prev_hash,
      timestamp: pyTimestamp(e.timestamp),
      decision_type: e.decision_type,
      inputs: e.inputs,
      output: e.output,
      actor: e.actor,
      committed: e.committed,
      entry_hash: e.entry_hash,
    }) + "\n"
  );
}

/** Builds the next entry after (prevSeq, prevHash). Throws if the record cannot be serialized. */
export function buildEntry(record: WalRecord, seq: number, prevHash: string, timestamp: number): WalEntry {
  return buildEntryWithLine(record, seq, prevHash, timestamp).entry;
}

/** buildEntry plus the entry's line (with its newline), serializing each field once. */
export function buildEntryWithLine(
  record: WalRecord,
  seq: number,
  prevHash: string,
  timestamp: number,
): { entry: WalEntry; line: string } {
  if (typeof record.decision_type !== "string" || record.decision_type === "") {
    throw new TypeError("wal: decision_type must be a non-empty string");
  }
  if (typeof record.committed !== "boolean") throw new TypeError("wal: committed must be a boolean");
  if (!isPlainObject(record.inputs)) throw new TypeError("wal: inputs must be an object");
  if (record.output !== undefined && !isPlainObject(record.output)) {
    throw new TypeError("wal: output must be an object");
  }
  const output = record.output ?? {};
  const actor = record.actor ?? DEFAULT_ACTOR;
  const entry: WalEntry = {
    seq,
    prev_hash: prevHash,
    timestamp,
    decision_type: record.decision_type,
    inputs: record.inputs,
    output,
    actor,
    committed: record.committed,
    entry_hash: "",
  };
  const parts = bodyAndLine(entry);
  entry.entry_hash = sha256Hex(parts.body);
  return { entry, line: `${parts.linePrefix},"entry_hash":"${entry.entry_hash}"}\n` };
}

function isPlainObject(v: unknown): v is JsonObject {
  return asJsonObject(v as JsonValue) !== undefined;
}

/** Why a parsed line is not a well-formed entry (undefined when it is). */
export function entryShapeProblem(raw: JsonValue): string | undefined {
  if (!isPlainObject(raw)) return "line is not a JSON object";
  if (typeof raw.seq !== "number" || !Number.isInteger(raw.seq) || raw.seq < 0)
    return "seq is not an integer";
  if (typeof raw.prev_hash !== "string") return "prev_hash is not a string";
  if (typeof raw.entry_hash !== "string") return "entry_hash is not a string";
  if (typeof raw.decision_type !== "string") return "decision_type is not a string";
  return undefined;
}

/** A typed entry from a parsed line (shape checked with entryShapeProblem first). */
export function toWalEntry(raw: JsonObject): WalEntry {
  const ts = raw.timestamp;
  return walEntry(
    raw.seq as number,
    raw.prev_hash as string,
    typeof ts === "number" ? ts : ts instanceof PyFloat ? ts.value : Number(ts),
    raw.decision_type as string,
    (isPlainObject(raw.inputs) ? raw.inputs : {}) as JsonObject,
    (isPlainObject(raw.output) ? raw.output : {}) as JsonObject,
    typeof raw.actor === "string" ? raw.actor : "",
    raw.committed === true,
    raw.entry_hash as string,
  );
}

/**
 * An entry the readers hand out, one per line read. Filled in from an empty object rather than
 * written as an object literal: V8 tracks where a literal's objects are made, and when the first
 * few hundred are all still alive at a young collection (a batch of entries handed out whole) it
 * makes every later one from that literal in the old generation. A reader's entries die young;
 * made old, they and the strings they hold pile up until a full collection, in peak RSS and CPU.
 */
export function walEntry(
  seq: number,
  prevHash: string,
  timestamp: number,
  decisionType: string,
  inputs: JsonObject,
  output: JsonObject,
  actor: string,
  committed: boolean,
  entryHash: string,
): WalEntry {
  const e = {} as WalEntry;
  e.seq = seq;
  e.prev_hash = prevHash;
  e.timestamp = timestamp;
  e.decision_type = decisionType;
  e.inputs = inputs;
  e.output = output;
  e.actor = actor;
  e.committed = committed;
  e.entry_hash = entryHash;
  return e;
}

/** Why a line whose value hashes right still fails: its bytes are not the ones written. */
export const NOT_EXACT =
  "line bytes differ from the entry as written (same hashed value: e.g. a float digit beyond double precision, a changed escape, the fields in another order or a key repeated)";

export type LineCheck =
  | { ok: true; raw: JsonObject; entry: WalEntry }
  | { ok: false; kind: "invalid_json" | "hash_mismatch"; message: string };

/**
 * Parses one line (without its newline) and checks its shape and its own hash, with the verdict
 * of the chain check (`wal verify`): ASCII tokens as Python writes them are exact whatever the
 * parsed object's key order, which a JS object changes for keys such as "1".
 */
export function checkLine(line: string): LineCheck {
  let raw: JsonValue;
  let tokensCanonical: boolean;
  try {
    ({ value: raw, canonical: tokensCanonical } = parseJsonCheckingTokens(line));
  } catch (err) {
    return { ok: false, kind: "invalid_json", message: (err as Error).message };
  }
  const problem = entryShapeProblem(raw);
  if (problem) return { ok: false, kind: "invalid_json", message: problem };
  const obj = raw as JsonObject;
  const { hash: computed, exact } = digestParsedEntry(
    obj,
    line,
    tokensCanonical && Buffer.byteLength(line) === line.length,
  );
  if (computed !== obj.entry_hash) {
    return {
      ok: false,
      kind: "hash_mismatch",
      message: `entry_hash ${String(obj.entry_hash)} does not match the content (computed ${computed})`,
    };
  }
  if (!exact) return { ok: false, kind: "hash_mismatch", message: NOT_EXACT };
  return { ok: true, raw: obj, entry: toWalEntry(obj) };
}
