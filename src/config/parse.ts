/**
 * Parsing and validating the text of the configuration file. A file that does not parse or
 * validate is a usage error of one line naming the key (or the line, for YAML syntax).
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { parseDocument } from "../vendor/yaml.js";
import { describeSchemaIssues, type IssueWording } from "../errors/schema-issue.js";
import { configSchema, type Config } from "./schema.js";

const wording: IssueWording = {
  document: "a mapping of settings (backup, s3, replication)",
  unknownKey: (key) =>
    key === "password"
      ? "the password never goes in this file; name a password_file or a password_env"
      : undefined,
};

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
    throw new UserError(
      `${file}: ${describeSchemaIssues(configSchema, parsed.error.issues, raw, wording)}`,
      ExitCode.USAGE,
    );
  return parsed.data;
}
