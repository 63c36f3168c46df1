/**
 * Parsing and validating the text of the configuration file. A file that does not parse or
 * validate is a usage error of one line naming the key (or the line, for YAML syntax).
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { parseDocument } from "../vendor/yaml.js";
import * as z from "../vendor/zod.js";
import { configSchema, type Config } from "./schema.js";

/** Parses and validates the text of a configuration file; `file` names it in errors. */
export function parseConfig(text: string, file: string): Config {
  const doc = parseDocument(text, { uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const line = syntax.linePos?.[0]?.line;
    throw new UserError(
      `${file}${line ? `:${line}` : ""}: not valid YAML: ${syntax.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`,
      ExitCode.USAGE,
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success)
    throw new UserError(`${file}: ${describeIssue(parsed.error.issues[0]!)}`, ExitCode.USAGE);
  return parsed.data;
}

/** The keys the schema allows in the mapping at `at`. */
function knownKeysAt(at: string[]): string[] {
  let schema: z.core.$ZodType | undefined = configSchema;
  for (const key of ["", ...at]) {
    if (key !== "") schema = (schema as z.ZodMiniObject).shape[key];
    // Through the optional and nullable wrappers to the mapping they hold.
    while (schema && !(schema instanceof z.ZodMiniObject) && "innerType" in schema._zod.def)
      schema = (schema._zod.def as { innerType: z.core.$ZodType }).innerType;
    if (!(schema instanceof z.ZodMiniObject)) return [];
  }
  return Object.keys((schema as z.ZodMiniObject).shape);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const key = [...issue.path.map(String), issue.keys[0]!].join(".");
    if (issue.keys[0] === "password")
      return `${key}: the password never goes in this file; name a password_file or a password_env`;
    const known = knownKeysAt(issue.path.map(String));
    return `${key}: unknown key${known.length ? ` (known here: ${known.join(", ")})` : ""}`;
  }
  if (at === "") return `expected a mapping of settings (backup, s3, replication)`;
  return `${at}: ${issue.message.replace(/^Invalid input: /, "")}`;
}
