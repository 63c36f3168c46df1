/**
 * Usage errors (unknown command or option, bad or missing value) as one line on stderr: what was
 * wrong, the closest valid word for a typo, and where the full page is — instead of commander's
 * default of the whole help page after the error.
 */
import type { Command } from "../vendor/commander.js";

/** `bernstein dr backup`: the words that invoke `cmd`. */
export function commandPath(cmd: Command): string {
  const words: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) words.unshift(c.name());
  return words.join(" ");
}

/**
 * commander's message (`error: unknown command 'bakup'\n(Did you mean backup?)`) as one line:
 * `unknown command 'bakup' (did you mean 'backup'?); see 'bernstein dr --help'`.
 */
export function usageLine(message: string, cmd: Command): string {
  const text = message
    .trim()
    .replace(/^error: /, "")
    .replace(/\s*\(Did you mean (?:one of )?(.+?)\?\)/, (_m, words: string) => {
      const quoted = words
        .split(/,\s*/)
        .map((w) => `'${w}'`)
        .join(" or ");
      return ` (did you mean ${quoted}?)`;
    })
    // "option '--max-agents <n>' argument '0' is invalid. --max-agents must be ..." -> "--max-agents 0: must be ..."
    .replace(
      /^option '(?:-\w, )?(--[\w-]+)[^']*' argument '(.*)' is invalid\.\s*(.*)$/s,
      (_m, flag: string, value: string, why: string) =>
        `${flag} ${value}: ${why.startsWith(`${flag} `) ? why.slice(flag.length + 1) : why || "invalid"}`,
    )
    .replace(/\s*\n\s*/g, "; ")
    .replace(/\.$/, "");
  return `${prefixSuggestion(text, cmd)}${pathOptionHint(text, cmd)}; see '${commandPath(cmd)} --help'`;
}

/**
 * `bernstein stat`: the commands whose names begin with the word are what was meant, whatever the
 * edit distance says (commander suggested 'start', one letter away, over 'status').
 */
function prefixSuggestion(text: string, cmd: Command): string {
  const word = /^unknown command '([^']+)'/.exec(text)?.[1];
  if (!word) return text;
  const names = cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]).filter((n) => n.startsWith(word));
  if (!names.length || names.length > 3) return text;
  const head = `unknown command '${word}' (did you mean ${names.map((n) => `'${n}'`).join(" or ")}?)`;
  return (
    head +
    text.slice(text.indexOf("'", "unknown command '".length) + 1).replace(/^ \(did you mean [^)]*\)/, "")
  );
}

/** The options that name the archive or location a command reads or writes, in preference order. */
const PATH_OPTIONS = ["--from", "--to"];

/**
 * `dr restore ./bk.tar.gz`: the commands take their archive or location as an option, and a word
 * given alone is the commonest way to get that wrong; commander's "too many arguments" does not
 * say what was meant.
 */
function pathOptionHint(text: string, cmd: Command): string {
  const word = cmd.args[0];
  if (!text.startsWith("too many arguments") || word === undefined) return "";
  const flag = PATH_OPTIONS.find((f) => cmd.options.some((o) => o.long === f));
  return flag ? ` (did you mean '${flag} ${word}'?)` : "";
}

/**
 * Makes every command of the tree report its usage errors as one line (`bernstein: ...`);
 * `onError` also gets the line (main prints it as JSON under --json).
 */
export function oneLineUsageErrors(root: Command, onError: (line: string) => void): void {
  const visit = (cmd: Command): void => {
    cmd.showHelpAfterError(false);
    cmd.configureOutput({
      outputError: (message, write) => {
        const line = usageLine(message, cmd);
        onError(line);
        write(`bernstein: ${line}\n`);
      },
    });
    if (cmd.commands.length > 0 && cmd.registeredArguments.length === 0) wordsAreCommands(cmd);
    for (const sub of cmd.commands) visit(sub);
  };
  visit(root);
}

/**
 * A group that also runs on its own (`bernstein checkpoint` writes one; `checkpoint list` lists)
 * took a mistyped sub-command for an argument: "too many arguments", no closest word. Its extra
 * words are reported as commander reports them for every other group: an unknown command.
 * (Only this command allows the excess; its sub-commands were created before and keep the check.)
 */
function wordsAreCommands(group: Command): void {
  group.allowExcessArguments(true);
  group.hook("preAction", (_hooked, actionCommand) => {
    if (actionCommand !== group || group.args.length === 0) return;
    // commander's own report, with its suggestion of the closest sub-command (not in its typings).
    (group as unknown as { unknownCommand(): never }).unknownCommand();
  });
}

const HELP_FLAGS = new Set(["--help", "-h"]);

/**
 * `bernstein statu --help`, `help dr bakup`: commander answers a help flag before it looks at the
 * words, so a word that names no command got its parent's page and exit 0. Without the flag
 * commander reports the word as a usage error (exit 2, with the closest command), so argv goes on
 * without it when a word where a sub-command belongs names none.
 */
export function withoutHelpForUnknownCommand(program: Command, argv: string[]): string[] {
  if (!argv.some((a) => HELP_FLAGS.has(a))) return argv;
  let cmd = program;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") break;
    if (word.startsWith("-")) {
      if (word === "--sdd" || word === "--config") i++; // the global options that take a value
      continue;
    }
    if (cmd.commands.length === 0) break;
    const sub = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!sub) return argv.filter((a) => !HELP_FLAGS.has(a));
    cmd = sub;
  }
  return argv;
}
