/**
 * A command's help page as one JSON document on stdout, for `--json` (`bernstein --json help dr
 * backup`, `dr backup --help --json`): a script that always passes `--json` reads JSON, never the
 * text page. The document holds what the page shows, from commander's own Help object, so the two
 * never disagree.
 */
import type { Command } from "../vendor/commander.js";
import { commandPath } from "./usage-error.js";

/** Makes every command of the tree below `root` (its own included) print its help as JSON. */
export function helpAsJson(root: Command): void {
  root.outputHelp = () => {
    process.stdout.write(JSON.stringify(helpDocument(root)) + "\n");
  };
  for (const sub of root.commands) helpAsJson(sub);
}

function helpDocument(cmd: Command) {
  const help = cmd.createHelp();
  const option = (o: Parameters<typeof help.optionTerm>[0]) => ({
    flags: help.optionTerm(o),
    description: help.optionDescription(o),
  });
  return {
    ok: true,
    command: commandPath(cmd),
    usage: help.commandUsage(cmd),
    description: help.commandDescription(cmd),
    arguments: help.visibleArguments(cmd).map((a) => ({
      name: help.argumentTerm(a),
      description: help.argumentDescription(a),
    })),
    options: help.visibleOptions(cmd).map(option),
    global_options: help.visibleGlobalOptions(cmd).map(option),
    commands: help.visibleCommands(cmd).map((c) => ({
      name: help.subcommandTerm(c),
      description: help.subcommandDescription(c),
    })),
  };
}
