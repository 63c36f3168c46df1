/**
 * CLI entry point: global options, command registration, and the one place that turns
 * errors into exit codes (user errors: one line, no stack).
 */
import { Command, CommanderError } from "commander";
import { ExitCode, UserError, userErrorFromFs } from "./errors.js";
import { registerCommands } from "./commands/index.js";
import { installConfigFile } from "../config/apply.js";
import { VERSION } from "../version.js";

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
    .showHelpAfterError()
    .exitOverride();
  await registerCommands(program, argv);
  installConfigFile(program);
  return program;
}

function wantsJson(argv: string[]): boolean {
  return argv.includes("--json");
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  program.configureOutput({
    writeErr: (s) => process.stderr.write(s),
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return ExitCode.OK;
      if (err.code === "commander.help") return ExitCode.OK;
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
if (invokedDirectly) exitWith(main(process.argv.slice(2)));
