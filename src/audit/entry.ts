/**
 * One audit entry and its HMAC, byte compatible with the Python Bernstein:
 * `hmac = HMAC-SHA256(key, prev_hmac + json.dumps(entry_without_hmac, sort_keys=True))` with the
 * DEFAULT separators (", " and ": "), and the line is `json.dumps(entry_with_hmac, sort_keys=True)`.
 */
import { createHmac } from "node:crypto";
import { canonicalJson, PY_DEFAULT, type JsonValue } from "../json/canonical.js";

export const GENESIS_HMAC = "0".repeat(64);

export interface AuditEvent {
  event_type: string;
  actor: string;
  resource_type: string;
  resource_id: string;
  details: { [key: string]: JsonValue } | JsonValue;
}

export interface AuditEntry extends AuditEvent {
  timestamp: string;
  prev_hmac: string;
  hmac: string;
}

/** HMAC of an entry (its `hmac` field, if present, is ignored). */
export function computeAuditHmac(key: Buffer, entry: Record<string, unknown>): string {
  const { hmac: _ignored, ...rest } = entry;
  const prev = typeof rest.prev_hmac === "string" ? rest.prev_hmac : "";
  return createHmac("sha256", key)
    .update(prev + canonicalJson(rest, PY_DEFAULT), "utf8")
    .digest("hex");
}

/** The line Python writes for an entry (without the newline). */
export function auditLine(entry: AuditEntry | Record<string, unknown>): string {
  return canonicalJson(entry, PY_DEFAULT);
}

/** ISO-8601 UTC with microseconds and `Z`, like Python's `datetime.utcnow().isoformat() + "Z"`. */
export function auditTimestamp(now = Date.now(), micros = Number(process.hrtime.bigint() % 1000n)): string {
  const iso = new Date(now).toISOString(); // 2026-11-27T01:58:21.904Z
  return `${iso.slice(0, 23)}${String(micros).padStart(3, "0")}Z`;
}

/** The day file an entry with this timestamp goes to: `YYYY-MM-DD.jsonl` (UTC). */
export function auditFileName(timestamp: string): string {
  return `${timestamp.slice(0, 10)}.jsonl`;
}
