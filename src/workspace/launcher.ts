/**
 * How bin/bernstein runs Node: the flags on its first line. The processes we start ourselves
 * with `process.execPath` (the detached orchestrator, the agent wrapper), and the tests and
 * benchmarks that run the CLI in a child process, pass the same flags: `node FILE` does not read
 * FILE's first line.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** bin/bernstein, from dist/src/workspace/ (a checkout or an installed package alike). */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bin/bernstein");

let flags: string[] | undefined;

/** The Node flags of bin/bernstein's first line (`#!/usr/bin/env -S node FLAGS`). */
export function launcherFlags(): string[] {
  if (flags) return flags;
  const shebang = readFileSync(BIN, "utf8").split("\n")[0]!;
  const words = shebang.split(/\s+/);
  const node = words.indexOf("node");
  if (!shebang.startsWith("#!") || node < 0) throw new Error(`${BIN}: unexpected first line ${shebang}`);
  flags = words.slice(node + 1).filter((w) => w.startsWith("--"));
  return flags;
}
