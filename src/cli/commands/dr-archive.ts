/**
 * `bernstein dr archive --to URL`: continuous WAL archiving (src/archive/). The commands that
 * read an archive (`dr list | restore | verify | drill --from`) are in dr-archive-read.ts and
 * dr/archive-point.ts.
 */
import type { Command } from "commander";
import { resolveAuditKeyPath } from "../../audit/key.js";
import { Archiver, type ArchiverEvent } from "../../archive/archiver.js";
import { resolveEncryptPassword, type PasswordFlags } from "../password.js";
import { storeFor } from "../../storage/open-store.js";
import { parseCatalogueLocation } from "../../storage/location.js";
import { durableMkdir } from "../../workspace/durable.js";
import { parseDuration } from "../../storage/schedule.js";
import { openWorkspace } from "../../workspace/layout.js";
import { ExitCode, UserError, destinationError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";

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

export function findDr(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === "dr") ??
    program.command("dr").description("disaster recovery: backups, restore, verification")
  );
}

interface ArchiveFlags extends PasswordFlags, RemoteFlags {
  to: string;
  interval: number;
  snapshotInterval: number;
  encrypt?: boolean;
  once?: boolean;
}

function describeEvent(e: ArchiverEvent): string {
  switch (e.event) {
    case "generation":
      return e.resumed ? `resuming generation ${e.generation}` : `new generation ${e.generation}: ${e.cause}`;
    case "snapshot":
      return `base snapshot ${e.number} of ${e.generation}: ${e.key}`;
    case "cycle":
      return `shipped ${e.segments} segment(s), ${e.bytes} bytes`;
    case "error":
      return `store error (the local files keep everything; retrying): ${e.error}`;
    case "recovered":
      return `store reachable again after ${e.after_errors} failed cycle(s)`;
  }
}

export function registerDrArchive(program: Command): void {
  const dr = findDr(program);
  addRemoteOptions(
    dr
      .command("archive")
      .description(
        "ship every durable WAL entry and log line to a folder or s3://bucket/prefix/, continuously",
      )
      .requiredOption("--to <location>", "archive location: a folder or s3://bucket/prefix/")
      .option(
        "--interval <duration>",
        "ship new durable bytes this often",
        durationFlag("--interval", 10),
        1000,
      )
      .option(
        "--snapshot-interval <duration>",
        "take a new base snapshot this often",
        durationFlag("--snapshot-interval", 1000),
        86_400_000,
      )
      .option("--encrypt", "encrypt snapshots and segments (needs a password)")
      .option(
        "--password <pw>",
        "passphrase (visible in ps: prefer --password-file or $BERNSTEIN_DR_PASSWORD)",
      )
      .option("--password-file <file>", "read the passphrase from a file (mode 0600 or stricter)")
      .option("--once", "one cycle (generation and snapshot when due, then ship), then exit"),
  ).action(async (opts: ArchiveFlags, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const ws = await openWorkspace(g.sdd);
    const { password, warnings } = await resolveEncryptPassword(opts, opts.encrypt);
    for (const w of warnings) out.warn(w);
    if (opts.encrypt) {
      throw new UserError("dr archive --encrypt: encrypted archives are not supported yet", ExitCode.USAGE);
    }
    const loc = parseCatalogueLocation(opts.to);
    if (loc.kind === "dir") {
      await durableMkdir(loc.path).catch((err: unknown) => {
        throw destinationError(`cannot create ${loc.path}`, err) ?? err;
      });
    }
    const store = await storeFor(loc, s3OptionsFrom(opts));
    const archiver = new Archiver({
      store,
      ws,
      intervalMs: opts.interval,
      snapshotIntervalMs: opts.snapshotInterval,
      password: opts.encrypt ? password : undefined,
      auditKeyPath: opts.encrypt ? resolveAuditKeyPath().path : undefined,
      log: (e) =>
        g.json ? undefined : e.event === "error" ? out.warn(describeEvent(e)) : out.line(describeEvent(e)),
    });
    let signal: NodeJS.Signals | undefined;
    const onSignal = (s: NodeJS.Signals) => () => {
      signal = s;
      archiver.stop();
    };
    const stopOn = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") };
    process.once("SIGINT", stopOn.SIGINT);
    process.once("SIGTERM", stopOn.SIGTERM);
    out.line(
      `Archiving ${ws.root} to ${store.root} every ${opts.interval}ms (Ctrl-C stops after the upload in flight)`,
    );
    try {
      if (opts.once) await archiver.step();
      else await archiver.run();
    } finally {
      process.off("SIGINT", stopOn.SIGINT);
      process.off("SIGTERM", stopOn.SIGTERM);
    }
    const health = archiver.health.snapshot();
    out.result({ ok: health.errors_in_a_row === 0, ...health }, () =>
      out.line(
        `stopped: generation ${health.generation ?? "none"}, ${health.segments_total} segment(s), ` +
          `${health.errors_total} error(s)`,
      ),
    );
    if (signal) process.exitCode = signal === "SIGINT" ? 130 : 143;
    else if (health.errors_in_a_row > 0) out.failed(ExitCode.REMOTE, `archive: ${health.last_error}`);
  });
}
