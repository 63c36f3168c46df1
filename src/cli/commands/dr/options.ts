/** The option vocabularies several `dr` subcommands share: passwords and identities, S3, retention rules. */
import type { Command } from "../../../vendor/commander.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { addIdentityOption } from "../../age-keys.js";
import { durationOption, intOption } from "../../number-option.js";
import {
  RetentionPolicyError,
  validatePolicy as validateRetentionPolicy,
  type RetentionPolicy,
} from "../../../storage/retention.js";
import type { S3Options } from "../../../storage/s3-store.js";

export interface RemoteFlags {
  endpoint?: string;
  region?: string;
  retries?: number;
}

export interface KeepFlags {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepWithin?: number;
}

/** The keys that open an archive: a password (Fernet `.enc`) or age identities (`.age`). */
export function addPasswordOptions(cmd: Command): Command {
  return addIdentityOption(
    cmd
      .option(
        "--password <pw>",
        "passphrase (visible in ps: prefer --password-file or $BERNSTEIN_DR_PASSWORD)",
      )
      .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)"),
  );
}

/** `--endpoint`, `--region`, `--retries`: for every command that may talk to S3. */
export function addRemoteOptions(cmd: Command): Command {
  return cmd
    .option(
      "--endpoint <url>",
      "S3-compatible endpoint (env BERNSTEIN_S3_ENDPOINT); uses path-style addressing",
    )
    .option("--region <region>", "S3 region (default AWS_REGION or the AWS config)")
    .option(
      "--retries <n>",
      "retries of transient S3 failures (5xx, throttling, resets)",
      intOption("--retries"),
      3,
    );
}

export function s3OptionsFrom(flags: RemoteFlags): S3Options {
  return { endpoint: flags.endpoint, region: flags.region, retries: flags.retries };
}

export function addKeepOptions(cmd: Command): Command {
  return cmd
    .option("--keep-last <n>", "keep the newest N backups", intOption("--keep-last"))
    .option(
      "--keep-within <duration>",
      "keep every backup made within this long (7d, 36h) before the newest one",
      durationOption("--keep-within"),
    )
    .option(
      "--keep-hourly <n>",
      "keep the newest backup of each of the last N hours that have one",
      intOption("--keep-hourly"),
    )
    .option(
      "--keep-daily <n>",
      "keep the newest backup of each of the last N days that have one",
      intOption("--keep-daily"),
    )
    .option(
      "--keep-weekly <n>",
      "keep the newest backup of each of the last N ISO weeks",
      intOption("--keep-weekly"),
    )
    .option(
      "--keep-monthly <n>",
      "keep the newest backup of each of the last N months",
      intOption("--keep-monthly"),
    );
}

export function policyFrom(flags: KeepFlags): RetentionPolicy {
  return {
    last: flags.keepLast,
    hourly: flags.keepHourly,
    daily: flags.keepDaily,
    weekly: flags.keepWeekly,
    monthly: flags.keepMonthly,
    within: flags.keepWithin,
  };
}

export function hasKeepFlags(flags: KeepFlags): boolean {
  return Object.values(policyFrom(flags)).some((v) => v !== undefined);
}

/** The `dr` group: made by whichever of its modules registers first (only some are loaded). */
export function drGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "dr") ??
    program.command("dr").description("disaster recovery: backups, restores, verification, drills")
  );
}

/** The `--keep-*` rules of prune and schedule, with the storage layer's verdict in flag words. */
export function checkKeepRules(policy: RetentionPolicy): void {
  try {
    validateRetentionPolicy(policy);
  } catch (err) {
    if (!(err instanceof RetentionPolicyError)) throw err;
    throw new UserError(
      err.rule === undefined
        ? "prune: give at least one of --keep-last, --keep-within, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly (> 0)"
        : `--keep-${err.rule}: expected a whole number >= 0, got ${String(err.value)}`,
      ExitCode.USAGE,
    );
  }
}

/**
 * `--latest`, `--at`, `--at-seq`, `--generation`, `--last-consistent` of `dr restore|verify`: a backup catalogue's
 * newest backup, or a point of the WAL archive `--from` names (dr/archive-point.ts decides which).
 */
export function addPointOptions(cmd: Command, verb: string): Command {
  return cmd
    .option("--latest", "the newest verified backup at --at LOCATION; with --from ARCHIVE: its newest point")
    .option(
      "--at <location|time>",
      "with --latest: a catalogue location; with --from ARCHIVE: the instant (ISO-8601 with a zone, or @<epoch s>)",
    )
    .option("--at-seq <run:seq>", "with --from ARCHIVE: right after this WAL entry")
    .option(
      "--generation <id>",
      "with --from ARCHIVE: the point of this generation only (where windows overlap; dr list --from names them)",
    )
    .option(
      "--last-consistent",
      `with --from ARCHIVE: on a broken segment, ${verb} the last instant before it`,
    );
}

/**
 * `--from` given on the command line wins over a `--at` the configuration file filled in
 * (`backup.destination`): the flag names the location this time.
 */
export function dropFileAtForFrom<T extends { at?: string; from?: string }>(cmd: Command, opts: T): T {
  return opts.from !== undefined && cmd.getOptionValueSource("at") === "config"
    ? { ...opts, at: undefined }
    : opts;
}
