/**
 * Finding, reading and validating the configuration file: `--config FILE`, else `bernstein.yaml`
 * in the folder that holds the workspace's `.sdd/`. A file that does not parse or validate is a
 * usage error of one line naming the key (or the line, for YAML syntax).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseDocument } from "yaml";
import { ZodObject, type z } from "zod";
import { ExitCode, UserError } from "../errors/errors.js";
import { configSchema, type Config } from "./schema.js";

export const CONFIG_FILE_NAME = "bernstein.yaml";

export interface LoadedConfig {
  /** Absolute path of the file, or null when there is none. */
  file: string | null;
  config: Config;
}

/** Where the configuration is looked for: `--config`, else beside the `.sdd/` folder. */
export function configPathFor(sdd: string, flag: string | undefined): { file: string; explicit: boolean } {
  if (flag !== undefined) return { file: path.resolve(flag), explicit: true };
  return { file: path.join(path.dirname(path.resolve(sdd)), CONFIG_FILE_NAME), explicit: false };
}

export async function loadConfig(sdd: string, flag: string | undefined): Promise<LoadedConfig> {
  const { file, explicit } = configPathFor(sdd, flag);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !explicit) return { file: null, config: {} };
    throw new UserError(
      `--config ${file}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a folder, expected a file" : (err as Error).message}`,
      ExitCode.USAGE,
    );
  }
  return { file, config: parseConfig(text, file) };
}

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
  let schema: z.ZodType = configSchema;
  for (const key of ["", ...at]) {
    if (key !== "") schema = (schema as z.ZodObject).shape[key] as z.ZodType;
    while (schema && !(schema instanceof ZodObject) && "unwrap" in schema)
      schema = (schema as unknown as { unwrap(): z.ZodType }).unwrap();
    if (!(schema instanceof ZodObject)) return [];
  }
  return Object.keys((schema as z.ZodObject).shape);
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
