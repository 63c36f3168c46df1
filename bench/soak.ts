/**
 * `npm run soak`: the one soak entry point — the long crash and endurance runs too slow for
 * `npm test`, each domain's at full scale, in sequence, each as its own process. An entry is either
 * a soak script (`bench/soak-<domain>.ts`, prints one JSON object) or a compiled test file with the
 * environment that turns it up. Entries not built (a domain not merged yet) are skipped.
 * `npm run soak -- orchestrator dr` runs only the named domains.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { benchOptions } from "./support/options.js";

/** dist/: soak scripts and test files are listed by their compiled paths below it. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

type Soak =
  { domain: string; script: string } | { domain: string; test: string; env: Record<string, string> };

const SOAKS: Soak[] = [
  // orchestrator: 200 tasks, --max-agents 4, 20 SIGKILLs of the orchestrator at random moments.
  { domain: "orchestrator", script: "bench/soak-orchestrator.js" },
  // dr: SIGKILL during backup and during restore at 20 random moments each.
  { domain: "dr", test: "test/dr/crash.test.js", env: { BERNSTEIN_DR_KILL_ROUNDS: "20" } },
  // dr: ten backups during a busy `start`, each restored, doctored and run to completion.
  { domain: "dr", test: "test/dr/soak/busy-start.js", env: {} },
];

const DOMAINS = [...new Set(SOAKS.map((s) => s.domain))];
const only = benchOptions({
  invocation: "npm run soak --",
  about: `The long crash and endurance runs, in sequence; name domains (${DOMAINS.join(", ")}) to run only those.`,
  options: {},
  positionals: "DOMAIN",
}).positionals;
const unknown = only.filter((d) => !DOMAINS.includes(d));
if (unknown.length) {
  process.stderr.write(`soak: no soak for ${unknown.join(", ")} (domains: ${DOMAINS.join(", ")})\n`);
  process.exit(2);
}
let failed = 0;
let ran = 0;
for (const soak of SOAKS) {
  if (only.length && !only.includes(soak.domain)) continue;
  const file = path.join(root, "script" in soak ? soak.script : soak.test);
  if (!existsSync(file)) continue;
  process.stderr.write(`soak: ${soak.domain}\n`);
  ran++;
  const res =
    "script" in soak
      ? spawnSync(process.execPath, [file, "--json"], { stdio: ["ignore", "inherit", "inherit"] })
      : spawnSync(process.execPath, ["--test", file], {
          stdio: "inherit",
          env: { ...process.env, ...soak.env },
        });
  if (res.status !== 0) {
    failed++;
    process.stderr.write(`soak: ${soak.domain} FAILED (exit ${res.status})\n`);
  }
}
process.exitCode = failed ? 1 : 0;
if (ran === 0) process.stderr.write("soak: nothing ran (not built? run `npm run build`)\n");
