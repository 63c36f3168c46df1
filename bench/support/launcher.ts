/**
 * The Node flags bin/bernstein runs with, read from its first line, so that benchmarks that
 * run our code in a child process run it as users do.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export function launcherFlags(): string[] {
  const shebang = readFileSync(path.join(repo, "bin", "bernstein"), "utf8").split("\n")[0]!;
  const words = shebang.split(/\s+/);
  const node = words.indexOf("node");
  if (!shebang.startsWith("#!") || node < 0)
    throw new Error(`bin/bernstein: unexpected first line ${shebang}`);
  return words.slice(node + 1).filter((w) => w.startsWith("--"));
}
