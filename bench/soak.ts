/**
 * `npm run soak`: the one soak entry point. Runs each domain's soak (`bench/soak-<domain>.ts`,
 * compiled next to this file) in sequence as its own process and fails if any fails. A domain adds
 * its soak by adding its name here. `npm run soak -- orchestrator` runs only the named ones.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const SOAKS = ["orchestrator", "dr", "wal", "recovery", "replication"];
const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
let failed = 0;
for (const name of SOAKS) {
  if (only.length && !only.includes(name)) continue;
  const file = path.join(here, `soak-${name}.js`);
  if (!existsSync(file)) continue;
  process.stderr.write(`soak: ${name}\n`);
  const res = spawnSync(process.execPath, [file, "--json"], { stdio: ["ignore", "inherit", "inherit"] });
  if (res.status !== 0) {
    failed++;
    process.stderr.write(`soak: ${name} FAILED (exit ${res.status})\n`);
  }
}
process.exitCode = failed ? 1 : 0;
