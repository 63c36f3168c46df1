/**
 * What `dr archive` and `start --archive-to` share: the duration flags, the one function that
 * opens a store and builds the archiver from flags, and `start`'s hook that hosts that archiver
 * inside the orchestrator (the `--archive-*` flags, `--sync`, the flags again for `--detach`).
 */
import path from "node:path";
import type { Command } from "../vendor/commander.js";
import type { Archiver, ArchiverEvent } from "../archive/archiver.js";
import type { ArchiverThread } from "../archive/archiver-thread.js";
import { checkMetricsFile } from "../dr/backup-metrics.js";
import { ExitCode, UserError } from "../errors/errors.js";
import type { HostedArchiver } from "../orchestrator/options.js";
import { storeFor } from "../storage/open-store.js";
import { resolveAuditKeyPath } from "../audit/key.js";
import { addRecipientOptions, resolveWriteKeys, type WriteKeyFlags } from "./age-keys.js";
import { parseCatalogueLocation } from "../storage/location.js";
import { parseDuration } from "../storage/schedule.js";
import type { S3Options } from "../storage/s3-store.js";
import { makeDestinationFolder } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { lockedBy, readLock } from "../workspace/lock.js";
import { intOption, sizeOption } from "./number-option.js";

/** A duration flag: `250ms`, or what `dr schedule --every` takes (90s, 15m, 1h, 1d). */
export function durationFlag(name: string, minMs: number): (v: string) => number {
  return (v: string) => {
    const ms = /^\s*(\d+)\s*ms\s*$/i.exec(v);
    let n: number;
    try {
      n = ms ? Number(ms[1]) : parseDuration(v);
    } catch {
      throw new UserError(`${name} ${v}: expected a duration such as 500ms, 1s, 15m, 24h`, ExitCode.USAGE);
    }
    if (n < minMs) throw new UserError(`${name} ${v}: at least ${minMs}ms`, ExitCode.USAGE);
    return n;
  };
}

export const DEFAULT_INTERVAL_MS = 1000;
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 86_400_000;
/** What merged segments grow to, in the archiver and in `dr archive-compact`. */
export const DEFAULT_COMPACT_TARGET_BYTES = 8 * 1024 * 1024;
/** The smallest `--compact-target-size`. */
export const MIN_COMPACT_TARGET_BYTES = 1024;

export interface ArchiverSpec {
  /** A folder or s3://bucket/prefix/. */
  to: string;
  intervalMs: number;
  snapshotIntervalMs: number;
  s3: S3Options;
  metricsFile?: string;
  /** Background compaction's target size; undefined: off. */
  compactTargetBytes?: number;
  sync?: boolean;
  password?: string;
  recipients?: readonly string[];
  /** The user chose a plain archive explicitly (--plain). */
  plainChosen?: boolean;
  auditKeyPath?: string;
  log: (e: ArchiverEvent) => void;
  /** The command, for the refusal when another archiver runs. */
  what: string;
  /** Before the flags' names in messages: `archive-` for `start`'s `--archive-to` and `--archive-metrics-file`. */
  flagPrefix?: string;
}

/** What an archiver needs before it starts: a writable metrics file, no other archiver (exit 3), the folder store made. */
async function prepareArchive(ws: Workspace, spec: ArchiverSpec): Promise<void> {
  const flag = (name: string) => `--${spec.flagPrefix ?? ""}${name}`;
  if (spec.metricsFile !== undefined) await checkMetricsFile(spec.metricsFile, flag("metrics-file"));
  // The archiver's modules load only here, not with the flags: a `start` without --archive-to
  // does not carry them.
  const { assertNoOtherArchiver } = await import("../archive/health.js");
  await assertNoOtherArchiver(ws.root, spec.what);
  const loc = parseCatalogueLocation(spec.to);
  if (loc.kind === "dir") {
    await makeDestinationFolder(loc.path, `${flag("to")} ${spec.to}`);
  } else {
    // Opening an S3 store reads its settings from the environment (no request yet): here a bad
    // value is the usage error it is, on the archiver's thread it would be that thread's crash.
    await storeFor(loc, spec.s3);
  }
}

/** The archiver's options from the flags (the store and the workspace apart). */
const archiverOptions = (spec: ArchiverSpec) => ({
  intervalMs: spec.intervalMs,
  snapshotIntervalMs: spec.snapshotIntervalMs,
  metricsFile: spec.metricsFile && path.resolve(spec.metricsFile),
  compactTargetBytes: spec.compactTargetBytes,
  sync: spec.sync,
  password: spec.password,
  recipients: spec.recipients,
  plainChosen: spec.plainChosen,
  auditKeyPath: spec.auditKeyPath,
});

/** Opens the store (creating a folder store) and builds the archiver; refuses a second one (exit 3). */
export async function openArchiver(ws: Workspace, spec: ArchiverSpec): Promise<Archiver> {
  await prepareArchive(ws, spec);
  const store = await storeFor(parseCatalogueLocation(spec.to), spec.s3);
  const { Archiver } = await import("../archive/archiver.js");
  return new Archiver({ store, ws, ...archiverOptions(spec), log: spec.log });
}

/** The same archiver on a thread of its own (`start --archive-to`: off the WAL writer's event loop). */
export async function openArchiverThread(ws: Workspace, spec: ArchiverSpec): Promise<ArchiverThread> {
  await prepareArchive(ws, spec);
  const { ArchiverThread } = await import("../archive/archiver-thread.js");
  return new ArchiverThread(
    { sddDir: ws.root, to: spec.to, s3: spec.s3, ...archiverOptions(spec) },
    spec.log,
  );
}

/** An event shown as a warning (stderr): a failed cycle, a lost continuity, WAL bytes damaged or held back. */
export const isArchiverWarning = (e: ArchiverEvent): boolean =>
  e.event === "error" ||
  e.event === "continuity-lost" ||
  e.event === "held-back" ||
  e.event === "snapshot-damage";

/** What an archiver event says, one line; `once`: a single cycle (`dr archive --once`), which retries nothing. */
export function describeArchiverEvent(e: ArchiverEvent, once = false): string {
  switch (e.event) {
    case "generation":
      return e.resumed ? `resuming generation ${e.generation}` : `new generation ${e.generation}: ${e.cause}`;
    case "snapshot":
      return `base snapshot ${e.number} of ${e.generation}: ${e.key}`;
    case "cycle":
      return `shipped ${e.segments} segment(s), ${e.bytes} bytes (${e.stored_bytes} stored)`;
    case "error":
      return `store error (the local files keep everything; ${once ? "the next run sends them" : "retrying"}): ${e.error}`;
    case "continuity-lost":
      return `workspace changed under the archiver: ${e.message}; a new generation starts (the previous one stays restorable)`;
    case "recovered":
      return `store reachable again after ${e.after_errors} failed cycle(s)`;
    case "compacted":
      return (
        `compacted ${e.generation}: ${e.replaced} segment(s) merged into ${e.merged}` +
        (e.leftovers ? `, ${e.leftovers} left by an interrupted compaction deleted` : "")
      );
    case "compact-error":
      return `background compaction failed (shipping goes on; retried later): ${e.error}`;
    case "held-back":
    case "snapshot-damage":
      return e.message;
    case "released":
      return `${e.run}: the bytes held back after seq ${e.after_seq} are gone or valid now; shipping goes on`;
  }
}

/** With `--archive-to`, the keys are the archive's (as `dr archive`'s, unprefixed: `start` has no others). */
export interface ArchiveStartFlags extends WriteKeyFlags {
  /** `start`'s audit key (`--key-file`): an encrypted snapshot carries it. */
  keyFile?: string;
  archiveTo?: string;
  archiveInterval?: number;
  archiveSnapshotInterval?: number;
  archiveEndpoint?: string;
  archiveRegion?: string;
  archiveRetries?: number;
  archiveMetricsFile?: string;
  archiveCompactTargetSize?: number;
  /** false with --no-archive-compact. */
  archiveCompact?: boolean;
  sync?: boolean;
}

/** `start`'s archive options. */
export function addArchiveStartOptions(cmd: Command): Command {
  cmd
    .option("--archive-to <location>", "also archive the WAL continuously to a folder or s3://bucket/prefix/")
    .option(
      "--archive-interval <duration>",
      "ship new durable bytes this often (default 1s)",
      durationFlag("--archive-interval", 10),
    )
    .option(
      "--archive-snapshot-interval <duration>",
      "take a new base snapshot this often (default 24h)",
      durationFlag("--archive-snapshot-interval", 1000),
    )
    .option("--archive-endpoint <url>", "S3-compatible endpoint of the archive (env BERNSTEIN_S3_ENDPOINT)")
    .option("--archive-region <region>", "S3 region of the archive (default AWS_REGION or the AWS config)")
    .option(
      "--archive-retries <n>",
      "retries of transient S3 failures of the archive (default 3)",
      intOption("--archive-retries"),
    )
    .option("--archive-metrics-file <file>", "write the archiver's health as Prometheus metrics here (.prom)")
    .option(
      "--archive-compact-target-size <size>",
      "merge the archive's small segments in the background up to this size (default 8MiB)",
      sizeOption("--archive-compact-target-size", MIN_COMPACT_TARGET_BYTES),
    )
    .option("--no-archive-compact", "do not merge the archive's small segments in the background")
    .option(
      "--sync",
      "with --archive-to: act on a decision only once the store holds it (RPO 0; a store outage blocks decisions)",
    )
    .option(
      "--encrypt",
      "with --archive-to: encrypt the archive with a password (--password-file or $BERNSTEIN_DR_PASSWORD)",
    )
    .option(
      "--password <pw>",
      "with --archive-to --encrypt: passphrase (visible in ps: prefer --password-file or $BERNSTEIN_DR_PASSWORD)",
    )
    .option(
      "--password-file <file>",
      "with --archive-to --encrypt: the passphrase's file (mode 0600 or stricter)",
    )
    .option(
      "--plain",
      "with --archive-to: a plain archive even where the configuration file turns encryption on",
    );
  return addRecipientOptions(cmd);
}

/** The archive flags again, for a re-spawned `start` (--detach). */
export function archiveArgs(f: ArchiveStartFlags): string[] {
  if (!f.archiveTo) return [];
  const loc = parseCatalogueLocation(f.archiveTo);
  const a = ["--archive-to", loc.kind === "dir" ? path.resolve(loc.path) : f.archiveTo];
  if (f.archiveInterval !== undefined) a.push("--archive-interval", `${f.archiveInterval}ms`);
  if (f.archiveSnapshotInterval !== undefined)
    a.push("--archive-snapshot-interval", `${f.archiveSnapshotInterval}ms`);
  if (f.archiveEndpoint) a.push("--archive-endpoint", f.archiveEndpoint);
  if (f.archiveRegion) a.push("--archive-region", f.archiveRegion);
  if (f.archiveRetries !== undefined) a.push("--archive-retries", String(f.archiveRetries));
  if (f.archiveMetricsFile) a.push("--archive-metrics-file", path.resolve(f.archiveMetricsFile));
  if (f.archiveCompactTargetSize !== undefined)
    a.push("--archive-compact-target-size", String(f.archiveCompactTargetSize));
  if (f.archiveCompact === false) a.push("--no-archive-compact");
  if (f.sync) a.push("--sync");
  for (const r of f.recipient ?? []) a.push("--recipient", r);
  if (f.recipientsFile) a.push("--recipients-file", path.resolve(f.recipientsFile));
  if (f.encrypt) a.push("--encrypt");
  // The password itself stays out of argv: a file by its path, the environment by inheritance.
  if (f.passwordFile) a.push("--password-file", path.resolve(f.passwordFile));
  if (f.plain) a.push("--plain");
  if (f.iKnowItIsPlain) a.push("--i-know-it-is-plain");
  return a;
}

/**
 * Refuses (exit 2) `start`'s archive flags without `--archive-to`, naming the first one given:
 * each means something only for the archive, and would otherwise be dropped in silence (also by
 * `--detach`, which passes them on only with it).
 */
export function refuseArchiveFlagsAlone(flags: ArchiveStartFlags): void {
  if (flags.archiveTo) return;
  const given = (
    [
      ["--sync", flags.sync],
      ["--encrypt", flags.encrypt],
      ["--recipient", flags.recipient?.length],
      ["--recipients-file", flags.recipientsFile],
      // A password the configuration file's backup.password_env filled was not typed.
      ["--password", flags.password !== undefined && flags.passwordEnv === undefined],
      ["--password-file", flags.passwordFile],
      ["--plain", flags.plain],
      ["--i-know-it-is-plain", flags.iKnowItIsPlain],
      ["--archive-interval", flags.archiveInterval !== undefined],
      ["--archive-snapshot-interval", flags.archiveSnapshotInterval !== undefined],
      ["--archive-endpoint", flags.archiveEndpoint !== undefined],
      ["--archive-region", flags.archiveRegion !== undefined],
      ["--archive-retries", flags.archiveRetries !== undefined],
      ["--archive-metrics-file", flags.archiveMetricsFile !== undefined],
      ["--archive-compact-target-size", flags.archiveCompactTargetSize !== undefined],
      ["--no-archive-compact", flags.archiveCompact === false],
    ] as const
  ).find(([, v]) => v);
  if (given) throw new UserError(`start ${given[0]} needs --archive-to`, ExitCode.USAGE);
}

/**
 * `start --archive-to`: builds the archiver and runs its first cycle (generation, base snapshot,
 * shipping) before the orchestrator takes the lock, so that snapshot needs no pause and a `--sync`
 * gate never waits for it. Returns what Orchestrator.open takes as `archive` (undefined without
 * the flag). With `--sync` a store that cannot be reached now is exit 7: nothing is decided yet.
 */
export async function startArchiveForStart(
  ws: Workspace,
  flags: ArchiveStartFlags,
  log: (line: string, problem?: boolean) => void,
): Promise<HostedArchiver | undefined> {
  if (!flags.archiveTo) return undefined;
  // The same rules as `dr archive` and `dr backup`: recipients or --encrypt (or the configuration
  // file) encrypt, and --plain to s3:// needs --i-know-it-is-plain.
  const keys = await resolveWriteKeys(flags, flags.archiveTo);
  for (const w of keys.warnings) log(w, true);
  const encrypted = keys.password !== undefined || keys.recipients !== undefined;
  const lock = await readLock(ws);
  if (lock.state === "held") throw lockedBy(ws, lock.info);
  const archiver = await openArchiverThread(ws, {
    to: flags.archiveTo,
    intervalMs: flags.archiveInterval ?? DEFAULT_INTERVAL_MS,
    snapshotIntervalMs: flags.archiveSnapshotInterval ?? DEFAULT_SNAPSHOT_INTERVAL_MS,
    s3: {
      endpoint: flags.archiveEndpoint,
      endpointFlag: "--archive-endpoint",
      region: flags.archiveRegion,
      retries: flags.archiveRetries ?? 3,
    },
    metricsFile: flags.archiveMetricsFile,
    compactTargetBytes:
      flags.archiveCompact === false
        ? undefined
        : (flags.archiveCompactTargetSize ?? DEFAULT_COMPACT_TARGET_BYTES),
    sync: flags.sync,
    password: keys.password,
    recipients: keys.recipients,
    plainChosen: flags.plain === true,
    auditKeyPath: encrypted ? resolveAuditKeyPath({ keyFile: flags.keyFile }).path : undefined,
    what: "start --archive-to",
    flagPrefix: "archive-",
    log: (e) =>
      e.event === "cycle" ? undefined : log(`archive: ${describeArchiverEvent(e)}`, isArchiverWarning(e)),
  });
  let first;
  try {
    await archiver.started();
    first = await archiver.step();
    if (flags.sync && !first) {
      await archiver.stopped();
      throw new UserError(
        `start --sync: the archive ${flags.archiveTo} cannot be written (${(await archiver.status()).last_error}); no decision can be made`,
        ExitCode.REMOTE,
      );
    }
  } catch (err) {
    await archiver.stop();
    throw err;
  }
  const how = keys.recipients ? ", encrypted to age recipients" : keys.password ? ", encrypted" : "";
  log(`archive: to ${flags.archiveTo}${how}${flags.sync ? " (--sync: decisions wait for the store)" : ""}`);
  return {
    commitGate: flags.sync ? (pos) => archiver.shippedThrough(pos) : undefined,
    start: () =>
      archiver.start((err) =>
        log(`archive: stopped: ${err instanceof Error ? err.message : String(err)}`, true),
      ),
    finish: () => archiver.finish(),
    stop: () => archiver.stop(),
  };
}
