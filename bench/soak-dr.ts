/**
 * The DR soak (run by `npm run soak`): SIGKILL during backup and during restore at 20 random
 * moments each (the suite runs 6), as its own `node --test` process.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const res = spawnSync(process.execPath, ["--test", path.join(dist, "test", "dr", "crash.test.js")], {
  stdio: "inherit",
  env: { ...process.env, BERNSTEIN_DR_KILL_ROUNDS: process.env.BERNSTEIN_DR_KILL_ROUNDS ?? "20" },
});
process.exitCode = res.status ?? 1;
