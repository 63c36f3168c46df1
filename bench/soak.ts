/**
 * `npm run soak`: the long crash and endurance tests that are too slow for `npm test`, run with
 * their full round counts. Each entry is a compiled test file and the environment that turns it
 * up; a file not built (another domain's, not merged yet) is skipped.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SOAKS: { file: string; env: Record<string, string> }[] = [
  // dr: SIGKILL during backup and during restore at 20 random moments each.
  { file: "test/dr/crash.test.js", env: { BERNSTEIN_DR_KILL_ROUNDS: "20" } },
];
let failed = 0;
for (const soak of SOAKS) {
  const file = path.join(root, soak.file);
  if (!existsSync(file)) continue;
  const res = spawnSync(process.execPath, ["--test", file], {
    stdio: "inherit",
    env: { ...process.env, ...soak.env },
  });
  if (res.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
