/**
 * Which key of the configuration file becomes which command-line option of which command, and
 * which environment variable it shadows. One table, read both when the file is applied to a
 * command and by `config show`.
 *
 * Precedence: a flag on the command line, then the file, then the environment, then the
 * built-in default. The environment never overrides the file; when both set something, the
 * command says so on stderr (the file wins).
 */
import path from "node:path";
import { TOKEN_ENV } from "../replication/auth.js";
import type { Config } from "./schema.js";

export const PASSWORD_ENV = "BERNSTEIN_DR_PASSWORD";

export interface Setting {
  /** The key in the file, dotted: `s3.endpoint`. */
  key: string;
  /** The commander attribute name of the option it fills (`--to-dir` → `toDir`). */
  attr: string;
  /** Command paths it applies to; absent: every command that has the option. */
  commands?: string[];
  /** The option is an S3 one only where the command also has this option (`--region` is not always S3's). */
  alongside?: string;
  /** Environment variables the setting takes the place of. */
  env?: string[];
  /** The option value from the file, paths made absolute against the file's folder. */
  value(c: Config, base: string): unknown;
}

// `start` writes backups too: the base snapshots of `--archive-to`.
const BACKUP_WRITERS = ["dr backup", "dr schedule", "dr drill", "dr archive", "start"];
const ARCHIVE_READERS = ["dr archive-restore", "dr archive-list", "dr archive-compact"];
const PASSWORD_USERS = [...BACKUP_WRITERS, "dr restore", "dr verify", "dr list", ...ARCHIVE_READERS];

/** A local path in the file is relative to the file's folder; s3:// locations are left alone. */
export function resolveAgainst(base: string, p: string | undefined): string | undefined {
  if (p === undefined || p.startsWith("s3://")) return p;
  return path.resolve(base, p);
}

/** Encryption is on once the file names recipients or a password source, unless it says `encrypt: false`. */
export function configuredEncrypt(c: Config): boolean | undefined {
  const b = c.backup;
  if (b?.encrypt !== undefined) return b.encrypt;
  const named = [b?.password_file, b?.password_env, b?.recipients, b?.recipients_file];
  return named.some((v) => v !== undefined) ? true : undefined;
}

const keep = (k: "last" | "hourly" | "daily" | "weekly" | "monthly"): Setting => ({
  key: `backup.retention.keep_${k}`,
  attr: `keep${k[0]!.toUpperCase()}${k.slice(1)}`,
  commands: ["dr schedule", "dr prune"],
  value: (c) => c.backup?.retention?.[`keep_${k}`],
});

export const SETTINGS: Setting[] = [
  {
    key: "backup.destination",
    attr: "toDir",
    commands: ["dr backup", "dr schedule"],
    value: (c, base) => resolveAgainst(base, c.backup?.destination),
  },
  {
    key: "backup.destination",
    attr: "at",
    commands: ["dr list", "dr prune"],
    value: (c, base) => resolveAgainst(base, c.backup?.destination),
  },
  { key: "backup.encrypt", attr: "encrypt", commands: BACKUP_WRITERS, value: configuredEncrypt },
  {
    key: "backup.password_file",
    attr: "passwordFile",
    commands: PASSWORD_USERS,
    env: [PASSWORD_ENV],
    value: (c, base) => resolveAgainst(base, c.backup?.password_file),
  },
  {
    key: "backup.recipients",
    attr: "recipient",
    commands: BACKUP_WRITERS,
    value: (c) => c.backup?.recipients,
  },
  {
    key: "backup.recipients_file",
    attr: "recipientsFile",
    commands: BACKUP_WRITERS,
    value: (c, base) => resolveAgainst(base, c.backup?.recipients_file),
  },
  {
    key: "backup.identity_file",
    attr: "identityFile",
    commands: ["dr restore", "dr verify", "dr drill", "dr list", "dr rekey", ...ARCHIVE_READERS],
    env: ["BERNSTEIN_DR_IDENTITY_FILE"],
    value: (c, base) => resolveAgainst(base, c.backup?.identity_file),
  },
  {
    key: "backup.metrics_file",
    attr: "metricsFile",
    commands: ["dr backup", "dr schedule"],
    value: (c, base) => resolveAgainst(base, c.backup?.metrics_file),
  },
  keep("last"),
  keep("hourly"),
  keep("daily"),
  keep("weekly"),
  keep("monthly"),
  {
    key: "backup.schedule.every",
    attr: "every",
    commands: ["dr schedule"],
    value: (c) => c.backup?.schedule?.every,
  },
  {
    key: "backup.schedule.run_as",
    attr: "runAs",
    commands: ["dr schedule"],
    value: (c) => c.backup?.schedule?.run_as,
  },
  {
    key: "s3.endpoint",
    attr: "endpoint",
    env: ["BERNSTEIN_S3_ENDPOINT"],
    value: (c) => c.s3?.endpoint,
  },
  {
    key: "s3.region",
    attr: "region",
    alongside: "endpoint",
    env: ["AWS_REGION", "AWS_DEFAULT_REGION"],
    value: (c) => c.s3?.region,
  },
  { key: "s3.retries", attr: "retries", alongside: "endpoint", value: (c) => c.s3?.retries },
  {
    key: "replication.token_file",
    attr: "tokenFile",
    env: [TOKEN_ENV],
    value: (c, base) => resolveAgainst(base, c.replication?.token_file),
  },
  { key: "replication.ack_policy", attr: "ackPolicy", value: (c) => c.replication?.ack_policy },
  {
    key: "replication.followers",
    attr: "follower",
    value: (c) => {
      const f = c.replication?.followers;
      return f && Object.entries(f).map(([name, url]) => (url ? `${name}=${url}` : name));
    },
  },
  { key: "worktrees", attr: "worktrees", commands: ["start"], value: (c) => c.worktrees },
  { key: "merge.strategy", attr: "mergeStrategy", commands: ["start"], value: (c) => c.merge?.strategy },
  { key: "merge.on_conflict", attr: "onConflict", commands: ["start"], value: (c) => c.merge?.on_conflict },
  {
    key: "merge.target_branch",
    attr: "targetBranch",
    commands: ["start"],
    value: (c) => c.merge?.target_branch,
  },
  {
    key: "merge.keep_branches",
    attr: "keepBranches",
    commands: ["start"],
    value: (c) => c.merge?.keep_branches,
  },
  {
    key: "merge.author.name",
    attr: "gitAuthorName",
    commands: ["start"],
    value: (c) => c.merge?.author?.name,
  },
  {
    key: "merge.author.email",
    attr: "gitAuthorEmail",
    commands: ["start"],
    value: (c) => c.merge?.author?.email,
  },
];

/** The commands that read the password; `backup.password_env` fills their `--password`. */
export const PASSWORD_ENV_SETTING = {
  key: "backup.password_env",
  attr: "password",
  commands: PASSWORD_USERS,
  env: [PASSWORD_ENV],
};

/** Options that form one choice: a flag for one of them replaces what the file says for all. */
export const OPTION_GROUPS: string[][] = [
  ["to", "toDir"],
  ["keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly"],
  ["password", "passwordFile"],
  ["recipient", "recipientsFile"],
];
