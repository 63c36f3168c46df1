/** Age key pairs made the way a user makes them: `bernstein key generate`. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { envFor, runCli, runMain } from "../../helpers.js";

/**
 * `run: "main"` runs `key generate` by main() in the test's process (runMain), for a file whose
 * keys are only the means to what it checks.
 */
export async function keyPair(
  dir: string,
  name: string,
  pq = false,
  run: "cli" | "main" = "cli",
): Promise<{ file: string; recipient: string }> {
  const file = path.join(dir, name);
  const r = await (run === "main" ? runMain : runCli)(
    ["key", "generate", "-o", file, ...(pq ? ["--pq"] : [])],
    { env: envFor(dir) },
  );
  assert.equal(r.code, 0, r.stderr);
  return { file, recipient: r.stdout.trim() };
}

export const identityOf = async (file: string): Promise<string> =>
  (await readFile(file, "utf8")).split("\n").find((l) => l.startsWith("AGE-SECRET-KEY"))!;
