/**
 * `bernstein completion bash|zsh|fish` and `bernstein man`: generated from the registered
 * command tree (every command group is loaded for them, see index.ts).
 */
import type { Command } from "../../vendor/commander.js";
import { Argument } from "../../vendor/commander.js";
import { describeCommands } from "../command-tree.js";
import { SHELLS, completionScript, type Shell } from "../completion.js";
import { manPage } from "../manpage.js";
import { Output } from "../output.js";
import { VERSION } from "../../version.js";

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("print the shell completion script for bash, zsh or fish")
    .addArgument(new Argument("<shell>", "bash, zsh or fish").choices(SHELLS))
    .action((shell: Shell, _opts: unknown, cmd: Command) => {
      const root = rootOf(cmd);
      const script = completionScript(shell, describeCommands(root), root.name());
      const out = Output.of(cmd);
      out.result({ ok: true, shell, script }, () => process.stdout.write(script));
    });

  program
    .command("man")
    .description("print the man page, bernstein(1), in roff (man -l <(bernstein man))")
    .action((_opts: unknown, cmd: Command) => {
      const root = rootOf(cmd);
      const page = manPage(describeCommands(root), root.name(), VERSION);
      Output.of(cmd).result({ ok: true, roff: page }, () => process.stdout.write(page));
    });
}
