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

/** The entries of `o` whose value is not undefined (an absent flag arrives as an undefined field). */
export function definedEntries<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Options from layers, later ones winning, where an undefined value never overrides: a spread
 * (`{...defaults, ...flags}`) copies a left-out flag's undefined over its default.
 */
export function resolveOptions<T extends object>(defaults: T, ...layers: (Partial<T> | undefined)[]): T {
  const resolved = { ...defaults };
  for (const layer of layers) if (layer) Object.assign(resolved, definedEntries(layer));
  return resolved;
}

/**
 * `record[key]`, own or inherited, for a key that is often missing. V8 answers `record[key]` (and
 * `key in record`) for a string it has not seen as a key by adding an internalized copy of it to
 * the old generation, which only a full GC frees: replaying a million entries about a million ids
 * would grow the heap with them. Object.hasOwn looks a key up without that.
 */
export function propertyOf<T>(record: Record<string, T>, key: string): T | undefined {
  for (let o: object | null = record; o !== null; o = Object.getPrototypeOf(o) as object | null)
    if (Object.hasOwn(o, key)) return (o as Record<string, T>)[key];
  return undefined;
}
