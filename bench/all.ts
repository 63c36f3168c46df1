/**
 * Runs every bench in sequence (`npm run bench`), each as its own process with --json, and
 * prints one JSON object per bench line by line. A bench not built (another domain's, not yet
 * merged) is skipped.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const BENCHES = ["wal", "recovery", "dr", "orchestrator", "replication", "s3"];
let failed = 0;
for (const name of BENCHES) {
  const file = path.join(here, `${name}.js`);
  if (!existsSync(file)) continue;
  const res = spawnSync(process.execPath, [file, "--json"], { stdio: ["ignore", "inherit", "inherit"] });
  if (res.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
