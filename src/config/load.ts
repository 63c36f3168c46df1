/**
 * Finding and reading the configuration file: `--config FILE`, else `bernstein.yaml`
 * in the folder that holds the workspace's `.sdd/`; parse.ts validates it.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import type { Config } from "./schema.js";

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
    // ENOTDIR: a folder on the way is a file (`--sdd some-file/.sdd`), so no file can be there;
    // the command then reports the workspace it cannot find, not a path the user never gave.
    if ((code === "ENOENT" || code === "ENOTDIR") && !explicit) return { file: null, config: {} };
    const named = explicit ? `--config ${file}` : `${file} (the configuration beside ${path.basename(sdd)})`;
    throw new UserError(
      `${named}: ${code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a folder, expected a file" : (err as Error).message}`,
      ExitCode.USAGE,
    );
  }
  // The parser and the schema (yaml, zod) load only when there is a file: most commands run
  // without one, and loading them costs every command a fifth of a CPU second.
  const { parseConfig } = await import("./parse.js");
  return { file, config: parseConfig(text, file) };
}
