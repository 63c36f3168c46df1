/**
 * The first thing wrong in a document checked against a zod schema (the configuration file,
 * agents.yaml, a task's front matter), as the one line a user reads: the key's path, then what
 * was wrong, in the same words for every file. zod's own messages start with a category
 * ("Invalid input: expected number, received string"); the path already says that much.
 */
import type * as z from "../vendor/zod.js";

export interface IssueWording {
  /** What the whole document must be, for an issue at its top level ("a mapping (default, agents)"). */
  document: string;
  /** Words for an unknown key instead of the keys known beside it (a secret that never goes there). */
  unknownKey?: (key: string) => string | undefined;
}

type Schema = z.core.$ZodType;
type Def = {
  type: string;
  innerType?: Schema;
  shape?: Record<string, Schema>;
  valueType?: Schema;
  element?: Schema;
  options?: Schema[];
  discriminator?: string;
  values?: unknown[];
};

const defOf = (s: Schema): Def => s._zod.def as unknown as Def;

/** Through optional, nullable and default wrappers to the schema they hold. */
function unwrapped(s: Schema): Schema {
  let d = defOf(s);
  while (d.innerType) {
    s = d.innerType;
    d = defOf(s);
  }
  return s;
}

const field = (value: unknown, key: PropertyKey): unknown =>
  value !== null && typeof value === "object" ? (value as Record<PropertyKey, unknown>)[key] : undefined;

/**
 * The variants of a union that `value` may be: for a discriminated union, the one its
 * discriminator names (all when it names none).
 */
function variantsOf(d: Def, value: unknown): Schema[] {
  const tag = d.discriminator === undefined ? undefined : field(value, d.discriminator);
  const named = d.options!.filter((o) => {
    const literal = defOf(unwrapped(o)).shape?.[d.discriminator!];
    return literal !== undefined && defOf(literal).values?.includes(tag) === true;
  });
  return named.length > 0 ? named : d.options!;
}

/** The keys the mapping at `at` in `value` (checked against `schema`) may hold. */
function knownKeysAt(schema: Schema, at: readonly PropertyKey[], value: unknown): string[] {
  let s: Schema | undefined = unwrapped(schema);
  for (const key of at) {
    let d = defOf(s);
    if (d.type === "union") {
      const variants = variantsOf(d, value);
      if (variants.length !== 1) return [];
      d = defOf(unwrapped(variants[0]!));
    }
    s =
      d.type === "object"
        ? d.shape![String(key)]
        : d.type === "record"
          ? d.valueType
          : d.type === "array"
            ? d.element
            : undefined;
    if (!s) return [];
    s = unwrapped(s);
    value = field(value, key);
  }
  const d = defOf(s);
  if (d.type === "object") return Object.keys(d.shape!);
  if (d.type === "union") return [...new Set(variantsOf(d, value).flatMap((o) => knownKeysAt(o, [], value)))];
  return [];
}

/**
 * The issue worth a line of all those a parse found: an unknown key first, since a misspelt key
 * usually explains a missing one (`comand:` and "command: missing").
 */
export function describeSchemaIssues(
  schema: Schema,
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  wording: IssueWording,
): string {
  const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0]!;
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const key = [...issue.path.map(String), issue.keys[0]!].join(".");
    const instead = wording.unknownKey?.(issue.keys[0]!);
    if (instead) return `${key}: ${instead}`;
    const known = knownKeysAt(schema, issue.path, input);
    return `${key}: unknown key${known.length ? ` (known here: ${known.join(", ")})` : ""}`;
  }
  if (at === "") return `expected ${wording.document}`;
  if (issue.code === "invalid_type" && / received undefined$/.test(issue.message)) return `${at}: missing`;
  if (issue.code === "invalid_union" && "options" in issue && Array.isArray(issue.options))
    return `${at}: expected one of ${issue.options.map((o) => JSON.stringify(o)).join("|")}`;
  return `${at}: ${issue.message.replace(/^Invalid (input|option): /, "")}`;
}
