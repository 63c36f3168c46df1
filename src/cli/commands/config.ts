/**
 * `bernstein config show`: the effective settings — from flags, the configuration file, the
 * environment or the built-in defaults — and where each came from. It takes the flags of the
 * settings, so `config show --to-dir X` shows what a command given `--to-dir X` would use.
 */
import { addWorktreeStartOptions, worktreeOptionsOf } from "../worktree-options.js";
import type { Command } from "../../vendor/commander.js";
import { Option } from "../../vendor/commander.js";
import { PASSWORD_ENV } from "../password.js";
import { commandPath, loadedConfigOf, settingApplies, shadowedEnv } from "../../config/apply.js";
import { configPathFor } from "../../config/load.js";
import { SETTINGS } from "../../config/settings.js";
import { Output, globalsOf } from "../output.js";
import { shown } from "../../workspace/shown-path.js";
import { addKeepOptions, addRemoteOptions } from "./dr/options.js";

type Source = "flag" | "file" | "env" | "default";

interface Row {
  key: string;
  value: unknown;
  source: Source;
  /** Environment variables that are set but were not used because the file or a flag won. */
  shadowed_env?: string[];
}

const SOURCE: Record<string, Source> = { cli: "flag", config: "file", default: "default" };

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * The values `start` uses for the worktree settings nothing sets: their options have no commander
 * default (`start --detach` passes on only what was set), so they come from where `start` takes
 * them. `merge.target_branch` has none: it is the branch checked out when the run starts.
 */
function worktreeDefaults(): Record<string, unknown> {
  const d = worktreeOptionsOf({});
  return {
    worktrees: d.all,
    "merge.strategy": d.strategy,
    "merge.on_conflict": d.onConflict,
    "merge.keep_branches": d.keepBranches,
    "merge.author.name": d.identity.name,
    "merge.author.email": d.identity.email,
  };
}

function settingRows(cmd: Command): Row[] {
  const rows: Row[] = [];
  const defaultsInForce = worktreeDefaults();
  const opts = cmd.opts() as Record<string, unknown>;
  const shadowed = shadowedEnv(cmd);
  for (const s of SETTINGS) {
    if (!settingApplies(s, cmd) || s.key === "backup.password_file" || rows.some((r) => r.key === s.key))
      continue;
    const from = cmd.getOptionValueSource(s.attr);
    let row: Row = {
      key: s.key,
      value: opts[s.attr] ?? null,
      source: SOURCE[from ?? "default"] ?? "default",
    };
    const env = s.env?.find((e) => process.env[e] !== undefined);
    if ((from === undefined || from === "default") && env !== undefined)
      row = { key: s.key, value: process.env[env], source: "env" };
    if (row.source === "default" && row.value === null) row.value = defaultsInForce[s.key] ?? null;
    if (s.key === "backup.encrypt") row.value = Boolean(row.value);
    if (s.key === "backup.encrypt" && opts.plain) row = { key: s.key, value: false, source: "flag" };
    const unused = shadowed.filter((x) => x.key === s.key).map((x) => x.env);
    if (row.source === "flag" && env !== undefined) unused.push(env);
    if (unused.length) row.shadowed_env = unused;
    rows.push(row);
  }
  rows.splice(2, 0, passwordRow(cmd));
  return rows;
}

/** Where the password comes from, never the password itself. */
function passwordRow(cmd: Command): Row {
  const key = "backup.password";
  const src = (attr: string) => cmd.getOptionValueSource(attr);
  const file = cmd.getOptionValue("passwordFile") as string | undefined;
  const envSet = Boolean(process.env[PASSWORD_ENV]);
  const shadowed = envSet ? { shadowed_env: [PASSWORD_ENV] } : {};
  if (src("password") === "cli")
    return { key, value: "--password (on the command line)", source: "flag", ...shadowed };
  if (file !== undefined)
    return { key, value: `file ${file}`, source: SOURCE[src("passwordFile")!]!, ...shadowed };
  const named = loadedConfigOf(cmd).config.backup?.password_env;
  if (named !== undefined) {
    const set = process.env[named] ? "set" : process.env[named] === "" ? "EMPTY" : "NOT SET";
    return {
      key,
      value: `env ${named} (${set})`,
      source: "file",
      ...(envSet && named !== PASSWORD_ENV ? shadowed : {}),
    };
  }
  if (envSet) return { key, value: `env ${PASSWORD_ENV}`, source: "env" };
  return { key, value: null, source: "default" };
}

function shownValue(v: unknown): string {
  if (v === null || v === undefined) return "-";
  if (Array.isArray(v)) return v.length ? v.join(", ") : "-";
  return String(v);
}

export function registerConfig(program: Command): void {
  const group = program.command("config").description("the configuration file (bernstein.yaml)");
  const show = group
    .command("show")
    .description("print the effective settings and where each came from (flag, file, env, default)")
    .option("--to-dir <location>", "a backup destination (folder or s3://bucket/prefix/)")
    .option("--encrypt", "encrypt backups")
    .option("--plain", "do not encrypt backups, whatever the file says")
    .option("--password <pw>", "passphrase (shown as given, never printed)")
    .option("--password-file <file>", "read the passphrase from a file")
    .option("--metrics-file <file>", "Prometheus textfile-collector file to update after each backup")
    .option("--every <duration>", "backup interval of dr schedule")
    .option("--run-as <user>", "User= of the systemd service dr schedule --print-systemd prints")
    .option("--token-file <file>", "replication bearer token file")
    .addOption(new Option("--ack-policy <policy>", "LEADER_ONLY, QUORUM or ALL").default("LEADER_ONLY"))
    .option("--follower <name[=url]>", "a replication follower (repeat)", collect, []);
  addWorktreeStartOptions(show);
  addRemoteOptions(addKeepOptions(show)).action((_opts: unknown, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const loaded = loadedConfigOf(cmd);
    const lookedFor = configPathFor(g.sdd, (cmd.optsWithGlobals() as { config?: string }).config).file;
    const rows = settingRows(cmd);
    out.result(
      {
        ok: true,
        command: commandPath(cmd),
        config_file: loaded.file,
        looked_for: lookedFor,
        settings: rows,
      },
      () => {
        out.line(
          `Configuration file: ${loaded.file ? shown(loaded.file) : `none (${shown(lookedFor)} does not exist)`}`,
        );
        const width = Math.max(...rows.map((r) => r.key.length)) + 2;
        const valueWidth = Math.min(48, Math.max(...rows.map((r) => shownValue(r.value).length)) + 2);
        for (const r of rows) {
          let note = r.shadowed_env ? `  (${r.shadowed_env.join(", ")} set but not used)` : "";
          if (r.key === "merge.target_branch" && r.value === null) note += "  (the branch checked out)";
          out.line(`${r.key.padEnd(width)}${shownValue(r.value).padEnd(valueWidth)}${r.source}${note}`);
        }
      },
    );
  });
}
