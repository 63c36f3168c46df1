/**
 * How bin/bernstein runs Node: the environment and flags of its `exec node` line. The processes
 * we start ourselves with `process.execPath` (the detached orchestrator, the agent wrapper, the
 * demo's orchestrator), and the tests and benchmarks that run the CLI in a child process, pass
 * the same: `node FILE` does not read FILE's first lines.
 *
 * The launcher's GLIBC_TUNABLES is for bernstein's own processes. A process started from one of
 * them that is not bernstein (an agent, git, sync) gets the caller's environment as it was:
 * `shedLauncherEnv` gives it back at start, `launcherEnv` adds the launcher's part again for a
 * process of ours.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** bin/bernstein, from dist/src/workspace/ (a checkout or an installed package alike). */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bin/bernstein");

const TUNABLES = "GLIBC_TUNABLES";

interface Launcher {
  flags: string[];
  /** The tunables the launcher puts before the caller's own GLIBC_TUNABLES. */
  tunables: string;
}

let launcher: Launcher | undefined;

function readLauncher(): Launcher {
  if (launcher) return launcher;
  const lines = readFileSync(BIN, "utf8").split("\n");
  const line = lines.find((l) => / exec node /.test(l));
  const tunables =
    line && new RegExp(`${TUNABLES}="([^"$]+)\\$\\{${TUNABLES}:\\+:\\$${TUNABLES}\\}"`).exec(line);
  if (!lines[0]?.startsWith("#!") || !line || !tunables)
    throw new Error(`${BIN}: no \`${TUNABLES}="…" exec node FLAGS\` line`);
  const words = line.split(/\s+/);
  launcher = {
    flags: words.slice(words.indexOf("node") + 1).filter((w) => w.startsWith("--")),
    tunables: tunables[1]!,
  };
  return launcher;
}

/** The Node flags bin/bernstein runs with. */
export function launcherFlags(): string[] {
  return readLauncher().flags;
}

/**
 * The caller's part of a GLIBC_TUNABLES value that starts with the launcher's (`ours`): "" when
 * there is none, undefined when the value is not the launcher's.
 */
function callersPart(value: string | undefined, ours: string): string | undefined {
  if (value === ours) return "";
  return value?.startsWith(`${ours}:`) ? value.slice(ours.length + 1) : undefined;
}

/** `env` (a caller's environment) as bin/bernstein sets it for Node; as it is if it already is. */
export function launcherEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const own = env[TUNABLES];
  const ours = readLauncher().tunables;
  if (callersPart(own, ours) !== undefined) return { ...env };
  return { ...env, [TUNABLES]: own ? `${ours}:${own}` : ours };
}

/**
 * Gives this process's environment back the caller's GLIBC_TUNABLES (the launcher's part was
 * read when the process started): whatever it starts inherits the caller's environment.
 */
export function shedLauncherEnv(env: NodeJS.ProcessEnv = process.env): void {
  // Unset: not started by the launcher, and bin/bernstein need not be read at start-up.
  if (env[TUNABLES] === undefined) return;
  const callers = callersPart(env[TUNABLES], readLauncher().tunables);
  if (callers === "") delete env[TUNABLES];
  else if (callers !== undefined) env[TUNABLES] = callers;
}
