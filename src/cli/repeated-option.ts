/**
 * commander keeps the last value of an option given twice, so `dr backup --to a --to b` wrote to
 * `b` only and `--password-file x --password-file y` read `y`, without a word: for a destination or
 * a key, the value a user meant may be the one dropped. Every option of the tree that takes one
 * value refuses a second, different one as a usage error naming the option (exit 2, one line);
 * the same value twice is harmless. Options that collect their values (`--recipient`,
 * `--depends-on`: their parser returns a list) and variadic ones stay repeatable.
 */
import { isDeepStrictEqual } from "node:util";
import type { Command, Option } from "../vendor/commander.js";

/** Makes every option of the tree below `root` (its own included) refuse a second, different value. */
export function refuseRepeatedValues(root: Command): void {
  for (const option of root.options) guard(root, option);
  for (const sub of root.commands) refuseRepeatedValues(sub);
}

function guard(cmd: Command, option: Option): void {
  if (!(option.required || option.optional) || option.variadic || !option.long) return;
  const parse = option.parseArg;
  const attr = option.attributeName();
  option.parseArg = <T>(value: string, previous: T): T => {
    const parsed = (parse ? parse(value, previous) : value) as T;
    if (Array.isArray(parsed)) return parsed;
    // The source is still the earlier value's: commander sets it after this parser returns. A
    // value from the configuration file or the environment is replaced by a flag, as documented.
    if (cmd.getOptionValueSource(attr) === "cli" && !isDeepStrictEqual(cmd.getOptionValue(attr), parsed))
      cmd.error(`error: ${option.long} given twice with different values; give it once`, {
        exitCode: 2,
        code: "commander.repeatedOption",
      });
    return parsed;
  };
}
