/**
 * commander gives an option that takes a value whatever word follows it, so with the value
 * forgotten the next option became it: `dr restore --from --dry-run` read a backup named
 * `--dry-run`, and `--sdd --json` (the global options are read anywhere on the line) restored into
 * a folder of that name. Every option of the tree whose value is a path, URL or name refuses a
 * value that starts with '-' as a usage error naming the option (exit 2, one line), and an empty
 * one: `--sdd ""` resolved to the current folder and laid a workspace out among the project's files.
 */
import { InvalidArgumentError, type Command, type Option } from "../vendor/commander.js";

/** Values that are free text and may start with '-': passwords, prompts, shell commands. */
const FREE_TEXT = new Set(["pw", "text", "cmd"]);

/** Numbers: `-5` reaches the option's own parser, which says what range it takes. */
const NUMBER = new Set(["n", "ms", "s", "size", "duration"]);

/** Paths, and what the message calls them; such a path is written `./-x`. */
const PATH: Record<string, string> = {
  file: "file",
  dir: "folder",
  path: "path",
  location: "location",
  "location|time": "location",
};

/** commander's own test of a negative number (parseOptions' negativeNumberArg). */
const NEGATIVE_NUMBER = /^-(\d+|\d*\.\d+)(e[+-]?\d+)?$/;

/** Makes every option of the tree below `root` (its own included) refuse an option-like value. */
export function refuseOptionLikeValues(root: Command): void {
  for (const option of root.options) guard(option);
  for (const sub of root.commands) refuseOptionLikeValues(sub);
}

function guard(option: Option): void {
  if (!(option.required || option.optional) || !option.long) return;
  const placeholder = /[<[]([^>\]]*)[>\]]/.exec(option.flags)?.[1] ?? "value";
  if (FREE_TEXT.has(placeholder)) return;
  const flag = option.long;
  const parse = option.parseArg;
  const pathNoun = PATH[placeholder];
  option.parseArg = <T>(value: string, previous: T): T => {
    if (value.trim() === "")
      throw new InvalidArgumentError(
        `${flag} needs ${pathNoun ? `a ${pathNoun}` : `a value (<${placeholder}>)`}, not an empty one`,
      );
    const numeric = NUMBER.has(placeholder) && NEGATIVE_NUMBER.test(value);
    if (value.startsWith("-") && !numeric)
      throw new InvalidArgumentError(
        pathNoun
          ? `${flag} needs a ${pathNoun}, and this looks like an option; write a ${pathNoun} whose name starts with '-' as ./${value}`
          : `${flag} needs a value (<${placeholder}>), and this looks like an option; ${flag} takes no value that starts with '-'`,
      );
    if (parse) return parse(value, previous);
    // commander's own handling of a value without a parser: a variadic option (`<age1...>`, whose
    // first value is taken like any other) collects its values.
    if (!option.variadic) return value as T;
    return (
      Array.isArray(previous) && previous !== option.defaultValue ? [...previous, value] : [value]
    ) as T;
  };
}
