/** `bernstein dr drill`: flags → runDrill → the drill's report. */
import type { Command } from "commander";
import type { DrillReport } from "../../../dr/drill.js";
import { resolveEncryptPassword, type PasswordFlags } from "../../../dr/password.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode } from "../../../errors/errors.js";
import { Output, globalsOf } from "../../output.js";
import { addPasswordOptions } from "./options.js";
import { shown } from "./source.js";

export function registerDrill(dr: Command): void {
  addPasswordOptions(
    dr
      .command("drill")
      .description(
        "automated restore drill: backup, dry-run, compare counts, restore to scratch, compare files, doctor; timings",
      )
      .option("--keep <dir>", "keep the drill's backup and restored copy in this folder")
      .option("--encrypt", "drill with an encrypted backup (needs a password)")
      .option("--plain", "drill with a plain backup even where the configuration file turns encryption on"),
  ).action(async (opts: PasswordFlags & { keep?: string; encrypt?: boolean }, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const { password, warnings: passwordWarnings } = await resolveEncryptPassword(opts, opts.encrypt);
    for (const w of passwordWarnings) out.warn(w);
    const ws = await openWorkspace(g.sdd);
    // Loaded on use: the drill's doctor checks bring in the orchestrator's task validation.
    const { runDrill } = await import("../../../dr/drill.js");
    const { runDoctor } = await import("../../../orchestrator/doctor.js");
    const report = await runDrill(ws, {
      keepDir: opts.keep,
      password: opts.encrypt ? password : undefined,
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
