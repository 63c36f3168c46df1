/**
 * CLI entry point: global options, command registration, and the one place that turns
 * errors into exit codes (user errors: one line, no stack).
 */
import { Command, CommanderError } from "../vendor/commander.js";
import type { EventEmitter } from "node:events";
import { ExitCode, UserError, ioError, userErrorFromFs } from "../errors/errors.js";
import { stdoutFailure, stdoutFlushed, tolerateClosedOutput } from "./output.js";
import { firstCommandIndex, registerCommands } from "./commands/index.js";
import { helpAsJson } from "./json-help.js";
import { refuseOptionLikeValues } from "./option-like-value.js";
import { refuseRepeatedValues } from "./repeated-option.js";
import { oneLineUsageErrors, withoutHelpForUnknownCommand } from "./usage-error.js";
import { installConfigFile } from "../config/apply.js";
import { VERSION } from "../version.js";
import { shedLauncherEnv } from "../workspace/launcher.js";

export async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new Command();
  program
    .name("bernstein")
    .description("Durable state and disaster recovery for a deterministic orchestrator of CLI coding agents")
    .version(VERSION)
    .option("--sdd <dir>", "workspace state folder (default ./.sdd, env BERNSTEIN_SDD)")
    .option("--json", "machine-readable output")
    .option("--quiet", "print nothing but errors")
    .option("--config <file>", "configuration file (default: bernstein.yaml beside the .sdd folder)")
    // Inherited by every command registered below: a sub-command's page lists --sdd, --json, --quiet.
    .configureHelp({ showGlobalOptions: true })
    .helpCommand("help [command...]", "show the help of a command (e.g. help dr backup)")
    .exitOverride();
  // Runs before commander's own version handler, which prints plain text only. (A Command is an
  // EventEmitter; its typings declare only on().)
  (program as unknown as EventEmitter).prependListener("option:version", () => {
    if (!wantsJson(argv)) return;
    process.stdout.write(JSON.stringify({ ok: true, name: "bernstein", version: VERSION }) + "\n");
    throw new CommanderError(0, "commander.version", VERSION);
  });
  await registerCommands(program, argv);
  refuseOptionLikeValues(program);
  refuseRepeatedValues(program);
  installConfigFile(program);
  if (wantsJson(argv)) helpAsJson(program);
  return program;
}

function wantsJson(argv: string[]): boolean {
  return argv.includes("--json");
}

/** `help dr backup` is `dr backup --help` (commander's help command reads only its first word). */
function helpAsFlag(argv: string[]): string[] {
  const i = firstCommandIndex(argv);
  if (i < 0 || argv[i] !== "help") return argv;
  return [...argv.slice(0, i), ...argv.slice(i + 1), "--help"];
}

export async function main(argv: string[]): Promise<number> {
  tolerateClosedOutput();
  const code = await run(argv);
  await stdoutFlushed();
  const failure = stdoutFailure();
  if (failure && code === ExitCode.OK) {
    const err = ioError("cannot write the output", failure);
    process.stderr.write(`bernstein: ${err?.message ?? `cannot write the output: ${failure.message}`}\n`);
    return ExitCode.IO;
  }
  return code;
}

async function run(givenArgv: string[]): Promise<number> {
  const argv = helpAsFlag(givenArgv);
  const program = await buildProgram(argv);
  let usage: string | undefined;
  oneLineUsageErrors(program, (line) => (usage = line));
  try {
    await program.parseAsync(withoutHelpForUnknownCommand(program, argv), { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return ExitCode.OK;
      if (err.code === "commander.help") return ExitCode.OK;
      if (wantsJson(argv) && usage !== undefined) {
        process.stdout.write(JSON.stringify({ ok: false, error: usage, exit_code: ExitCode.USAGE }) + "\n");
      }
      return ExitCode.USAGE;
    }
    const userErr = err instanceof UserError ? err : userErrorFromFs(err, (err as Error)?.message ?? "error");
    if (userErr) {
      if (wantsJson(argv)) {
        process.stdout.write(
          JSON.stringify({
            ok: false,
            error: userErr.message,
            exit_code: userErr.exitCode,
            ...userErr.details,
          }) + "\n",
        );
      }
      process.stderr.write(`bernstein: ${userErr.message}\n`);
      return userErr.exitCode;
    }
    process.stderr.write(`bernstein: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 70;
  }
}

/**
 * Sets the process's exit code from a command's outcome. Node exits (with 0) when nothing is
 * left to wait on, even if the command's promise never settled (seen with a download wrapper
 * that lost a stream's error): a command that did not finish must never look like a success.
 */
export function exitWith(work: Promise<number>): void {
  let settled = false;
  process.once("beforeExit", () => {
    if (settled) return;
    process.stderr.write(
      "bernstein: internal error: the command stopped before it finished (it was left waiting for input that can no longer come)\n",
    );
    process.exitCode = 70;
  });
  work.then(
    (code) => {
      settled = true;
      process.exitCode = code;
    },
    (err) => {
      settled = true;
      process.stderr.write(`bernstein: internal error: ${String(err)}\n`);
      process.exitCode = 70;
    },
  );
}

const invokedDirectly = process.argv[1] !== undefined && /(?:main\.js|bernstein)$/.test(process.argv[1]);
if (invokedDirectly) {
  shedLauncherEnv();
  exitWith(main(process.argv.slice(2)));
}
