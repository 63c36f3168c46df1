/** `bernstein dr drill`: flags → runDrill → the drill's report. */
import type { Command } from "commander";
import type { DrillReport } from "../../../dr/drill.js";
import type { PasswordFlags } from "../../password.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import {
  addRecipientOptions,
  resolveIdentities,
  resolveWriteKeys,
  type RecipientFlags,
} from "../../age-keys.js";
import { Output, globalsOf } from "../../output.js";
import { addPasswordOptions } from "./options.js";
import { shown } from "./source.js";

type DrillFlags = PasswordFlags &
  RecipientFlags & { keep?: string; encrypt?: boolean; plain?: boolean; identityFile?: string };

export function registerDrill(dr: Command): void {
  const cmd = addPasswordOptions(
    dr
      .command("drill")
      .description(
        "automated restore drill: backup, dry-run, compare counts, restore to scratch, compare files, doctor; timings",
      )
      .option("--keep <dir>", "keep the drill's backup and restored copy in this folder")
      .option("--encrypt", "drill with an encrypted backup (needs a password)")
      .option("--plain", "drill with a plain backup even where the configuration file turns encryption on"),
  );
  addRecipientOptions(cmd).action(async (opts: DrillFlags, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const keys = await resolveWriteKeys(opts, undefined);
    for (const w of keys.warnings) out.warn(w);
    const identities = keys.recipients ? await resolveIdentities(opts.identityFile) : undefined;
    if (keys.recipients && !identities) {
      throw new UserError(
        "a drill restores what it backs up: with --recipient, give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE) that opens it",
        ExitCode.USAGE,
      );
    }
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

export function printDrill(out: Output, report: DrillReport): void {
  out.line(`Restore drill of ${shown(report.sdd)} (${report.encrypted ? "encrypted" : "plain"} backup):`);
  for (const s of report.steps) {
    out.line(
      `  [${s.ok ? "ok" : "FAIL"}] ${s.name.padEnd(10)} ${String(s.duration_ms).padStart(7)} ms  ${s.detail}`,
    );
  }
  out.line(`  RTO (restore step): ${report.rto_ms} ms`);
  out.line(report.ok ? "Drill passed." : "DRILL FAILED");
}
