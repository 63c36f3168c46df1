/**
 * The DR soak (run by `npm run soak`), each as its own `node --test` process:
 *  - SIGKILL during backup and during restore at 20 random moments each (the suite runs 6);
 *  - ten backups taken during a busy `start`, each restored, doctored and run to completion.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
let failed = 0;
for (const file of ["test/dr/crash.test.js", "test/dr/soak/busy-start.js"]) {
  const res = spawnSync(process.execPath, ["--test", path.join(dist, file)], {
    stdio: "inherit",
    env: { ...process.env, BERNSTEIN_DR_KILL_ROUNDS: process.env.BERNSTEIN_DR_KILL_ROUNDS ?? "20" },
  });
  if (res.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
