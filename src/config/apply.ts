/**
 * Applies the configuration file to the command about to run. The file's values are set on the
 * command's options with commander's `config` source before the command line is parsed, so a
 * flag on the line replaces them (commander's precedence: default < config < cli), required
 * options are satisfied by the file, and `config show` can tell where each value came from.
 */
import type { EventEmitter } from "node:events";
import path from "node:path";
import type { Command, Option } from "../vendor/commander.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { resolveSddDir } from "../workspace/layout.js";
import { loadConfig, type LoadedConfig } from "./load.js";
import { OPTION_GROUPS, PASSWORD_ENV_SETTING, SETTINGS, type Setting } from "./settings.js";

const loadedBy = new WeakMap<Command, LoadedConfig>();

/** `dr backup` for the `backup` command under `dr`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

export function optionFor(cmd: Command, attr: string): Option | undefined {
  return cmd.options.find((o) => o.attributeName() === attr);
}

/** `config show` takes every setting's flag, to show what a flag would change. */
const SHOWS_ALL = "config show";

export function settingApplies(s: { commands?: string[]; attr: string; alongside?: string }, cmd: Command) {
  if (!optionFor(cmd, s.attr)) return false;
  const p = commandPath(cmd);
  if (p === SHOWS_ALL) return true;
  if (s.commands && !s.commands.includes(p)) return false;
  return s.alongside === undefined || optionFor(cmd, s.alongside) !== undefined;
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

function clear(cmd: Command, attr: string): void {
  const o = optionFor(cmd, attr);
  cmd.setOptionValueWithSource(attr, o?.defaultValue, o?.defaultValue === undefined ? undefined : "default");
}

function fillFromFile(cmd: Command, s: Setting, loaded: LoadedConfig): void {
  const value = s.value(loaded.config, path.dirname(loaded.file ?? "."));
  if (value === undefined) return;
  const source = cmd.getOptionValueSource(s.attr);
  if (source !== undefined && source !== "default") return;
  cmd.setOptionValueWithSource(s.attr, value, "config");
  // A flag replaces the file's value, also for options that collect repeated flags (--follower).
  (cmd as unknown as EventEmitter).prependListener(`option:${optionFor(cmd, s.attr)!.name()}`, () => {
    if (cmd.getOptionValueSource(s.attr) === "config") clear(cmd, s.attr);
  });
}

/** The configuration file the running command uses (loaded by the hook below). */
export function loadedConfigOf(cmd: Command): LoadedConfig {
  return loadedBy.get(rootOf(cmd)) ?? { file: null, config: {} };
}

/**
 * Installs the hooks on the program: the file is read once the global options are known and
 * before the sub-command parses its own; just before the action, choices made by flags win over
 * the file (`--to` over the file's destination, `--plain` over its encryption).
 */
export function installConfigFile(program: Command): void {
  program.hook("preSubcommand", async (root, sub) => {
    const g = root.opts() as { sdd?: string; config?: string };
    const loaded = await loadConfig(resolveSddDir(g.sdd), g.config);
    loadedBy.set(root, loaded);
    if (loaded.file === null) return;
    for (const cmd of allCommands(sub))
      for (const s of SETTINGS) if (settingApplies(s, cmd)) fillFromFile(cmd, s, loaded);
  });
  program.hook("preAction", (_root, action) => settleFlagsOverFile(action));
}

function fromFile(cmd: Command, attr: string): boolean {
  return cmd.getOptionValueSource(attr) === "config";
}

function settleFlagsOverFile(cmd: Command): void {
  const given = (attr: string) => cmd.getOptionValueSource(attr) === "cli";
  if (cmd.getOptionValue("plain") && given("encrypt"))
    throw new UserError("--plain and --encrypt contradict each other", ExitCode.USAGE);
  // Recipients win over a password only as the configuration's defaults: two explicit keys of a
  // write would drop the one the user typed.
  if (
    optionFor(cmd, "encrypt") !== undefined &&
    (given("recipient") || given("recipientsFile")) &&
    (given("encrypt") || given("password") || given("passwordFile"))
  )
    throw new UserError(
      "--recipient/--recipients-file (age, .age) and --encrypt/--password/--password-file (Fernet, .enc) contradict each other: give one",
      ExitCode.USAGE,
    );
  const loaded = loadedConfigOf(cmd);
  if (loaded.file === null) return;
  for (const group of OPTION_GROUPS)
    if (group.some(given)) for (const attr of group) if (fromFile(cmd, attr)) clear(cmd, attr);

  // `dr drill --from ARCHIVE` writes no backup: like `dr verify --from` it reads an archive, with
  // the file's password or identity, and the file's choice to encrypt (or its recipients) is not
  // the user asking for one.
  const writesBackup = optionFor(cmd, "encrypt") !== undefined && cmd.getOptionValue("from") === undefined;
  if (!writesBackup)
    for (const attr of ["encrypt", "recipient", "recipientsFile"]) if (fromFile(cmd, attr)) clear(cmd, attr);
  // `start`'s keys only encrypt its archive: without --archive-to the file's keys are not asked for.
  if (optionFor(cmd, "archiveTo") !== undefined && cmd.getOptionValue("archiveTo") === undefined) {
    for (const attr of ["encrypt", "passwordFile", "recipient", "recipientsFile"])
      if (fromFile(cmd, attr)) clear(cmd, attr);
  }
  if (cmd.getOptionValue("plain")) {
    for (const attr of ["encrypt", "passwordFile", "recipient", "recipientsFile"])
      if (fromFile(cmd, attr)) clear(cmd, attr);
  }
  const encrypting = !writesBackup || Boolean(cmd.getOptionValue("encrypt"));
  if (!encrypting)
    for (const attr of ["passwordFile", "recipient", "recipientsFile"])
      if (fromFile(cmd, attr)) clear(cmd, attr);

  const envName = loaded.config.backup?.password_env;
  // A unit or crontab printed for the schedule names the variable; the printer needs no password.
  const printsUnits = Boolean(cmd.getOptionValue("printSystemd") || cmd.getOptionValue("printCron"));
  if (
    envName !== undefined &&
    !printsUnits &&
    encrypting &&
    settingApplies(PASSWORD_ENV_SETTING, cmd) &&
    !given("password") &&
    !given("passwordFile")
  ) {
    const pw = process.env[envName];
    if (pw) {
      cmd.setOptionValueWithSource("password", pw, "config");
      cmd.setOptionValueWithSource("passwordEnv", envName, "config");
    } else if (writesBackup && commandPath(cmd) !== SHOWS_ALL)
      throw new UserError(
        `${loaded.file}: backup.password_env: ${envName} is ${pw === "" ? "empty" : "not set"} in the environment`,
        ExitCode.USAGE,
      );
  }
  if (commandPath(cmd) !== SHOWS_ALL) warnShadowedEnv(cmd, loaded);
}

/** The environment variables a value from the file took the place of, per setting key. */
export function shadowedEnv(cmd: Command): { key: string; env: string }[] {
  const out: { key: string; env: string }[] = [];
  for (const s of [...SETTINGS, PASSWORD_ENV_SETTING]) {
    if (!s.env || !settingApplies(s, cmd) || !fromFile(cmd, s.attr)) continue;
    const named = loadedConfigOf(cmd).config.backup?.password_env;
    for (const env of s.env) if (process.env[env] && env !== named) out.push({ key: s.key, env });
  }
  return out;
}

function warnShadowedEnv(cmd: Command, loaded: LoadedConfig): void {
  if ((cmd.optsWithGlobals() as { quiet?: boolean }).quiet) return;
  for (const { key, env } of shadowedEnv(cmd)) {
    process.stderr.write(`warning: ${env} is set but ignored: ${loaded.file} sets ${key}\n`);
  }
}
