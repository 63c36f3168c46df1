/**
 * A bench's command line, declared once: each option with its default and what it changes.
 * `--help` prints them. An unknown option, a missing value or a number out of range is refused
 * with exit 2 before anything runs: a typo (`--run 3`) must not cost minutes of measuring with
 * the defaults, nor a figure taken under settings nobody asked for.
 */
import { parseArgs } from "node:util";
import { shedLauncherEnv } from "../../src/workspace/launcher.js";

export type OptionSpec =
  | { kind: "flag"; help: string }
  | { kind: "number"; default: number; help: string; min?: number; integer?: boolean; value?: string }
  | { kind: "string"; default?: string; help: string; value?: string; pattern?: RegExp };

type ValueOf<S extends OptionSpec> = S extends { kind: "flag" }
  ? boolean
  : S extends { kind: "number" }
    ? number
    : S extends { default: string }
      ? string
      : string | undefined;

export type OptionValues<T extends Record<string, OptionSpec>> = { [K in keyof T]: ValueOf<T[K]> };

export interface BenchCommand<T extends Record<string, OptionSpec>> {
  /** How the bench is run (`npm run bench:dr --`), for the usage line and messages. */
  invocation: string;
  /** One or two sentences: what it measures. */
  about: string;
  options: T;
  /** Words after the options (soak's domains), named for the usage line; none allowed if absent. */
  positionals?: string;
}

/** `--json`, as most benches take it. */
export const JSON_OUTPUT = {
  kind: "flag",
  help: "print one JSON document instead of lines",
} as const satisfies OptionSpec;

/** What an option's default looks like in `--help`. */
function shownDefault(spec: OptionSpec): string {
  if (spec.kind === "flag" || spec.default === undefined) return "";
  return ` (default ${spec.default})`;
}

export function usageOf(cmd: BenchCommand<Record<string, OptionSpec>>): string {
  const rows = Object.entries(cmd.options).map(([name, spec]) => {
    const value = spec.kind === "flag" ? "" : ` ${spec.value ?? (spec.kind === "number" ? "N" : "VALUE")}`;
    return [`--${name}${value}`, spec.help + shownDefault(spec)];
  });
  rows.push(["--help", "print this and exit"]);
  const width = Math.max(...rows.map(([left]) => left!.length)) + 2;
  const positional = cmd.positionals ? ` [${cmd.positionals}...]` : "";
  return [
    `usage: ${cmd.invocation} [options]${positional}`,
    "",
    cmd.about,
    "",
    ...rows.map(([left, right]) => `  ${left!.padEnd(width)}${right}`),
    "",
  ].join("\n");
}

class OptionError extends Error {}

function numberOf(name: string, spec: Extract<OptionSpec, { kind: "number" }>, text: string): number {
  const n = text.trim() === "" ? NaN : Number(text);
  const min = spec.min ?? 0;
  const bad =
    !Number.isFinite(n) || n < min || (spec.integer && !Number.isInteger(n))
      ? `${spec.integer ? "an integer" : "a number"} ≥ ${min}`
      : undefined;
  if (bad) throw new OptionError(`--${name} wants ${bad}, not "${text}"`);
  return n;
}

/**
 * The options of `argv` (default: this process's) as `cmd` declares them. Prints the usage and
 * exits 0 on `--help`; prints one line and exits 2 on anything it does not accept.
 *
 * Every bench calls it first, so it also gives the process's environment back the caller's
 * GLIBC_TUNABLES (bench/launch.ts started the bench with bin/bernstein's): the baselines and
 * stores a bench starts (tar, gzip, the S3 server) run in the caller's environment, and the
 * processes of ours it starts are given the launcher's with `launcherEnv`.
 */
export function benchOptions<T extends Record<string, OptionSpec>>(
  cmd: BenchCommand<T>,
  argv: string[] = process.argv.slice(2),
): OptionValues<T> & { positionals: string[] } {
  shedLauncherEnv();
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usageOf(cmd));
    process.exit(0);
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: cmd.positionals !== undefined,
      options: Object.fromEntries(
        Object.entries(cmd.options).map(([name, spec]) => [
          name,
          { type: spec.kind === "flag" ? ("boolean" as const) : ("string" as const) },
        ]),
      ),
    });
    const out: Record<string, unknown> = { positionals };
    for (const [name, spec] of Object.entries(cmd.options)) {
      const given = values[name];
      if (spec.kind === "flag") out[name] = given === true;
      else if (spec.kind === "number")
        out[name] = typeof given === "string" ? numberOf(name, spec, given) : spec.default;
      else if (typeof given !== "string") out[name] = spec.default;
      else if (spec.pattern && !spec.pattern.test(given))
        throw new OptionError(`--${name} wants ${spec.value ?? spec.pattern.source}, not "${given}"`);
      else out[name] = given;
    }
    return out as OptionValues<T> & { positionals: string[] };
  } catch (err) {
    const known =
      err instanceof OptionError || (err as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS");
    if (!known) throw err;
    const name = cmd.invocation.replace(/^npm run /, "").replace(/ --$/, "");
    const said = (err as Error).message.split("\n")[0]!.replace(/\. To specify .*$/, "");
    process.stderr.write(`${name}: ${said[0]!.toLowerCase()}${said.slice(1)}; see --help\n`);
    process.exit(2);
  }
}
