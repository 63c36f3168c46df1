/**
 * Runs a bench as bin/bernstein runs the CLI: with its Node flags and environment
 * (src/workspace/launcher.ts). What a bench measures in its own process (the WAL writer, the
 * archiver in the writer's process, the floors beside them) then runs as the orchestrator runs
 * it. `npm run bench:NAME -- ARGS` is `node dist/bench/launch.js NAME ARGS`; its exit code is the
 * bench's (128 + the signal's number when a signal ended it).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launcherEnv, launcherFlags } from "../src/workspace/launcher.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const [name, ...args] = process.argv.slice(2);
const file = name && /^[a-z][a-z0-9-]*$/.test(name) ? path.join(here, `${name}.js`) : undefined;
if (!file || name === "launch" || !existsSync(file)) {
  process.stderr.write(`bench: no bench named ${JSON.stringify(name ?? "")}; usage: launch.js NAME [ARGS]\n`);
  process.exit(2);
}
const child = spawn(process.execPath, [...launcherFlags(), file, ...args], {
  stdio: "inherit",
  env: launcherEnv(),
});
// A signal is passed on, and this process exits only when the bench has (with the bench's code).
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => {
  process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0));
});
