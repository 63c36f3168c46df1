/**
 * `bernstein dr archive --to URL`: continuous WAL archiving (src/archive/). The commands that
 * read an archive (`dr list | restore | verify | drill --from`) are in dr-archive-read.ts and
 * dr/archive-point.ts.
 */
import { Option, type Command } from "../../vendor/commander.js";
import { resolveAuditKeyPath } from "../../audit/key.js";
import {
  DEFAULT_COMPACT_TARGET_BYTES,
  DEFAULT_INTERVAL_MS,
  MIN_COMPACT_TARGET_BYTES,
  DEFAULT_SNAPSHOT_INTERVAL_MS,
  describeArchiverEvent,
  isArchiverWarning,
  durationFlag,
  openArchiver,
} from "../archive-options.js";
import { addRecipientOptions, resolveWriteKeys, type WriteKeyFlags } from "../age-keys.js";
import { openWorkspace } from "../../workspace/layout.js";
import { interruptedExitCode, onFirstInterrupt, type InterruptSignal } from "../../workspace/interrupt.js";
import { ExitCode } from "../../errors/errors.js";
import { sizeOption } from "../number-option.js";
import { Output, globalsOf } from "../output.js";
import { addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";
import { shown } from "../../workspace/shown-path.js";
import { formatDuration } from "../../storage/schedule.js";
import { isS3Url } from "../../storage/location.js";

export function findDr(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "dr") ??
    program.command("dr").description("disaster recovery: backups, restore, verification")
  );
}

interface ArchiveFlags extends WriteKeyFlags, RemoteFlags {
  to: string;
  interval: number;
  snapshotInterval: number;
  once?: boolean;
  metricsFile?: string;
  compactTargetSize: number;
  /** false with --no-compact. */
  compact: boolean;
}

export function registerDrArchive(program: Command): void {
  const dr = findDr(program);
  const archive = addRemoteOptions(
    dr
      .command("archive")
      .description(
        "ship every durable WAL entry and log line to a folder or s3://bucket/prefix/, continuously",
      )
      .requiredOption("--to <location>", "archive location: a folder or s3://bucket/prefix/")
      // The defaults as they are written on the command line (the values are ms and bytes).
      .addOption(
        new Option("--interval <duration>", "ship new durable bytes this often")
          .argParser(durationFlag("--interval", 10))
          .default(DEFAULT_INTERVAL_MS, "1s"),
      )
      .addOption(
        new Option("--snapshot-interval <duration>", "take a new base snapshot this often")
          .argParser(durationFlag("--snapshot-interval", 1000))
          .default(DEFAULT_SNAPSHOT_INTERVAL_MS, "24h"),
      )
      .option(
        "--encrypt",
        "encrypt snapshots and segments with a password (Fernet; PBKDF2 once per generation)",
      )
      .option("--plain", "a plain archive even where the configuration file turns encryption on")
      .option(
        "--password <pw>",
        "passphrase (visible in ps: prefer --password-file or $BERNSTEIN_DR_PASSWORD)",
      )
      .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)")
      .option("--once", "one cycle (generation and snapshot when due, then ship), then exit")
      .addOption(
        new Option(
          "--compact-target-size <size>",
          "merge small segments in the background into segments of up to this size",
        )
          .argParser(sizeOption("--compact-target-size", MIN_COMPACT_TARGET_BYTES))
          .default(DEFAULT_COMPACT_TARGET_BYTES, "8MiB"),
      )
      .option("--no-compact", "do not merge small segments in the background (dr archive-compact still can)")
      .option(
        "--metrics-file <file>",
        "rewrite the archiver's health as Prometheus metrics here with its status (.prom; may be dr backup's)",
      ),
  );
  addRecipientOptions(archive).action(async (opts: ArchiveFlags, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const ws = await openWorkspace(g.sdd);
    // The same rules as `dr backup`: recipients or --encrypt (or the configuration file) encrypt,
    // and --plain to s3:// needs --i-know-it-is-plain.
    const keys = await resolveWriteKeys(opts, opts.to);
    for (const w of keys.warnings) out.warn(w);
    const encrypted = keys.password !== undefined || keys.recipients !== undefined;
    /** The first damage found in the workspace's WAL (shipped as found, or held back). */
    let damage: string | undefined;
    // Said with the archiver's first event (its generation opened, or a store error it retries),
    // not before: a run refused while opening its generation (an encrypted one and no password, a
    // location holding backups) prints only its error.
    const announcement: { line?: string } = {};
    let announced = false;
    const announce = (): void => {
      if (announced || announcement.line === undefined) return;
      announced = true;
      out.line(announcement.line);
    };
    const archiver = await openArchiver(ws, {
      to: opts.to,
      intervalMs: opts.interval,
      snapshotIntervalMs: opts.snapshotInterval,
      s3: s3OptionsFrom(opts),
      metricsFile: opts.metricsFile,
      compactTargetBytes: opts.compact ? opts.compactTargetSize : undefined,
      password: keys.password,
      recipients: keys.recipients,
      plainChosen: opts.plain === true,
      auditKeyPath: encrypted ? resolveAuditKeyPath().path : undefined,
      what: "dr archive",
      log: (e) => {
        if (e.event === "snapshot-damage" || (e.event === "held-back" && e.damage)) damage ??= e.message;
        if (g.json) return;
        announce();
        if (isArchiverWarning(e)) out.warn(describeArchiverEvent(e, opts.once));
        else out.line(describeArchiverEvent(e, opts.once));
      },
    });
    let signal: InterruptSignal | undefined;
    const stopListening = onFirstInterrupt((s) => {
      signal = s;
      archiver.stop();
    });
    const how = keys.recipients ? "encrypted to age recipients" : keys.password ? "encrypted" : "plain";
    const where = isS3Url(opts.to) ? archiver.health.snapshot().destination : opts.to;
    announcement.line = opts.once
      ? `Archiving ${shown(ws.root)} to ${where} once, ${how}`
      : `Archiving ${shown(ws.root)} to ${where} every ${intervalText(opts.interval)}, ${how} (Ctrl-C stops after the upload in flight)`;
    try {
      if (opts.once) await archiver.step();
      else await archiver.run();
      announce();
    } finally {
      stopListening();
    }
    await archiver.health.stopped();
    const health = archiver.health.snapshot();
    out.result({ ok: health.errors_in_a_row === 0 && damage === undefined, ...health }, () =>
      out.line(
        `stopped: generation ${health.generation ?? "none"}, ${health.segments_total} segment(s), ` +
          `${health.errors_total} error(s)`,
      ),
    );
    if (signal) process.exitCode = interruptedExitCode(signal);
    else if (health.errors_in_a_row > 0) out.failed(ExitCode.REMOTE, `archive: ${health.last_error}`);
    // A scheduled --once is how damage reaches an alert: what could be shipped is, then exit 9.
    else if (damage !== undefined) out.failed(ExitCode.INTEGRITY, `archive: ${damage}`);
  });
}

/** The interval as the help and the flag write it: 1s, 15m; milliseconds only below a whole second. */
const intervalText = (ms: number): string => (ms % 1000 === 0 ? formatDuration(ms) : `${ms}ms`);
