/**
 * The command definitions as data, read from commander's own tree (what `--help` shows): the
 * single source the shell completions and the man page are generated from.
 */
import type { Command } from "../vendor/commander.js";

export interface OptionSpec {
  /** `--to-dir`; options without a long name are left out. */
  long: string;
  short?: string;
  /** `<location>` when the option takes a value. */
  value?: string;
  choices?: string[];
  description: string;
}

export interface ArgumentSpec {
  name: string;
  required: boolean;
  choices?: string[];
}

export interface CommandSpec {
  /** Words after the program name: `["dr", "backup"]`; `[]` for the program. */
  path: string[];
  description: string;
  options: OptionSpec[];
  arguments: ArgumentSpec[];
  subcommands: CommandSpec[];
}

export function describeCommands(cmd: Command, path: string[] = []): CommandSpec {
  const help = cmd.createHelp();
  const options: OptionSpec[] = [];
  for (const o of help.visibleOptions(cmd)) {
    if (!o.long) continue;
    const value = /[<[][^>\]]*[>\]]/.exec(o.flags)?.[0];
    options.push({
      long: o.long,
      ...(o.short ? { short: o.short } : {}),
      ...(value ? { value } : {}),
      ...(o.argChoices ? { choices: [...o.argChoices] } : {}),
      description: o.description,
    });
  }
  return {
    path,
    description: cmd.description(),
    options,
    arguments: cmd.registeredArguments.map((a) => ({
      name: a.name(),
      required: a.required,
      ...(a.argChoices ? { choices: [...a.argChoices] } : {}),
    })),
    subcommands: help
      .visibleCommands(cmd)
      .filter((c) => c.name() !== "help")
      .map((c) => describeCommands(c, [...path, c.name()])),
  };
}

/** Every command of the tree, the program first, parents before children. */
export function allCommandSpecs(root: CommandSpec): CommandSpec[] {
  return [root, ...root.subcommands.flatMap(allCommandSpecs)];
}
