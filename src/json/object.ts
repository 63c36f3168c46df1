import { PyFloat, type JsonValue } from "./canonical.js";

export type JsonObject = { [key: string]: JsonValue };

/** Narrows a parsed value to a JSON object (not null, not an array, not a PyFloat). */
export function asJsonObject(v: JsonValue | undefined): JsonObject | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof PyFloat) ? v : undefined;
}

/** A JSON number as a JS number (PyFloat and bigint included), or undefined. */
export function asNumber(v: JsonValue | undefined): number | undefined {
  if (typeof v === "number") return v;
  if (v instanceof PyFloat) return v.value;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}
