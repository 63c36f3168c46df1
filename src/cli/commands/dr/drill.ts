/** `bernstein dr drill`: flags → runDrill → the drill's report. */
import type { Command } from "../../../vendor/commander.js";
import type { DrillReport } from "../../../dr/drill.js";
import type { PasswordFlags } from "../../password.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import {
  addRecipientOptions,
  checkIdentitiesOpen,
  resolveIdentities,
  resolveWriteKeys,
  type RecipientFlags,
} from "../../age-keys.js";
import { Output, globalsOf } from "../../output.js";
import type { PointFlags } from "./archive-point.js";
import { addPasswordOptions, addRemoteOptions } from "./options.js";
import { shown } from "./source.js";

type DrillFlags = PasswordFlags &
  RecipientFlags &
  PointFlags & { keep?: string; encrypt?: boolean; plain?: boolean; identityFile?: string };

export function registerDrill(dr: Command): void {
  const cmd = addPasswordOptions(
    dr
      .command("drill")
      .description(
        "automated restore drill: backup, dry-run, compare counts, restore to scratch, compare files, doctor; timings",
      )
      .option("--keep <dir>", "keep the drill's backup and restored copy in this folder")
      .option("--encrypt", "drill with an encrypted backup (needs a password)")
      .option("--plain", "drill with a plain backup even where the configuration file turns encryption on")
      .option(
        "--from <location>",
        "drill a point of this WAL archive (folder or s3://bucket/prefix/) instead",
      )
      .option("--at <time>", "with --from: the instant (ISO-8601 with a zone, or @<epoch s>)")
      .option("--at-seq <run:seq>", "with --from: right after this WAL entry")
      .option("--generation <id>", "with --from: the point of this generation only (where windows overlap)")
      .option("--latest", "with --from: the newest point the archive holds")
      .option("--last-consistent", "with --from: on a broken segment, drill the last instant before it")
      .option("--decrypt", "with --from: the archive is encrypted (needs a password)"),
  );
  addRemoteOptions(cmd);
  addRecipientOptions(cmd).action(async (opts: DrillFlags, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    if (
      opts.from !== undefined ||
      opts.at !== undefined ||
      opts.atSeq !== undefined ||
      opts.generation !== undefined ||
      opts.latest ||
      opts.lastConsistent
    )
      return drillArchivePoint(cmd, opts);
    const keys = await resolveWriteKeys(opts, undefined);
    for (const w of keys.warnings) out.warn(w);
    if (!keys.recipients && opts.identityFile !== undefined)
      throw new UserError(
        "dr drill: --identity-file opens a drill's backup made to --recipient (or, with --from, an archive); this drill's backup has no recipients",
        ExitCode.USAGE,
      );
    const identities = keys.recipients ? await resolveIdentities(opts.identityFile) : undefined;
    if (keys.recipients && !identities) {
      throw new UserError(
        "a drill restores what it backs up: with --recipient, give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE) that opens it",
        ExitCode.USAGE,
      );
    }
    if (keys.recipients && identities)
      await checkIdentitiesOpen(identities, keys.recipients, "a drill restores what it backs up");
    const ws = await openWorkspace(g.sdd);
    // Loaded on use: the drill's doctor checks bring in the orchestrator's task validation.
    const { runDrill } = await import("../../../dr/drill.js");
    const { runDoctor } = await import("../../../orchestrator/doctor.js");
    const report = await runDrill(ws, {
      keepDir: opts.keep,
      password: keys.password,
      recipients: keys.recipients,
      identities,
      doctor: runDoctor,
    });
    for (const w of report.warnings) out.warn(w);
    out.result(report, () => printDrill(out, report));
    if (!report.ok) {
      const step = report.steps.find((s) => !s.ok);
      out.failed(
        ExitCode.CHECK_FAILED,
        `dr drill failed: ${step ? `${step.name}: ${step.detail}` : "see --json"}`,
      );
    }
  });
}

/** `dr drill --from ARCHIVE --at ...`: a point of a WAL archive instead of a fresh backup. */
async function drillArchivePoint(cmd: Command, opts: DrillFlags): Promise<void> {
  if (opts.from === undefined)
    throw new UserError(
      "dr drill: --at, --at-seq, --latest, --generation and --last-consistent need --from LOCATION naming a WAL archive",
      ExitCode.USAGE,
    );
  const backupOnly = opts.encrypt
    ? "--encrypt"
    : opts.plain
      ? "--plain"
      : opts.recipient?.length
        ? "--recipient"
        : opts.recipientsFile !== undefined
          ? "--recipients-file"
          : "";
  if (backupOnly)
    throw new UserError(
      `dr drill: ${backupOnly} is for the drill's own backup; a drill --from an archive makes none`,
      ExitCode.USAGE,
    );
  const point = await import("./archive-point.js");
  const src = await point.pointSourceOf("drill", opts);
  if (!src)
    // `dr drill --from bk.tar.gz` (and `dr drill bk.tar.gz`, whose hint is --from) means "drill
    // this backup", which is what dr verify does.
    throw await point.noArchiveAt(
      "drill",
      opts.from,
      `${opts.from} holds no WAL archive (no gen-* object)`,
      `--from ${opts.from} is a file, not a WAL archive; a drill makes its own backup, and 'dr verify --from ${opts.from}' checks a backup file end to end`,
    );
  const { runDoctor } = await import("../../../orchestrator/doctor.js");
  await point.drillPointCommand(cmd, src, opts, runDoctor, printDrill);
}

/** A drill's report; one of a point of a WAL archive has `point`. */
export function printDrill(out: Output, report: DrillReport & { point?: unknown }): void {
  const source = "point" in report ? "WAL archive" : "backup";
  out.line(`Restore drill of ${shown(report.sdd)} (${report.encrypted ? "encrypted" : "plain"} ${source}):`);
  for (const s of report.steps) {
    out.line(
      `  [${s.ok ? "ok" : "FAIL"}] ${s.name.padEnd(10)} ${String(s.duration_ms).padStart(7)} ms  ${s.detail}`,
    );
  }
  // A restore that failed measured no RTO (--json says null).
  if (report.rto_ms !== null) out.line(`  RTO (restore step): ${report.rto_ms} ms`);
  out.line(report.ok ? "Drill passed." : "DRILL FAILED");
}
