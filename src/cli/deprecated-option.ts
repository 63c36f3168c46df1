/**
 * The old spelling of a renamed option: still accepted (scripts keep working), hidden from help,
 * and each use prints a one-line note on stderr naming the new spelling (not under --quiet).
 */
import { type Command, Option } from "../vendor/commander.js";

/**
 * Adds `oldFlags` (e.g. `--region <name>`) to `cmd` as an alias of its option `newLong`, whose
 * argument parser (if any) reads the value. Add it after the new option.
 */
export function addDeprecatedAlias(cmd: Command, oldFlags: string, newLong: string): Command {
  const target = cmd.options.find((o) => o.long === newLong);
  if (!target) throw new Error(`addDeprecatedAlias: ${cmd.name()} has no option ${newLong}`);
  const old = new Option(oldFlags, `deprecated: use ${newLong}`).hideHelp();
  let used = false;
  cmd.addOption(old);
  cmd.on(`option:${old.name()}`, (value: string) => {
    used = true;
    const parsed = target.parseArg ? target.parseArg(value, undefined) : value;
    cmd.setOptionValueWithSource(target.attributeName(), parsed, "cli");
  });
  // Said once the whole command line is parsed, when --quiet (wherever it stands) is known.
  cmd.hook("preAction", (_self, action) => {
    if (used && action === cmd && !action.optsWithGlobals().quiet)
      process.stderr.write(
        `bernstein: note: ${old.long} is deprecated for '${cmd.name()}'; use ${newLong}\n`,
      );
  });
  return cmd;
}
