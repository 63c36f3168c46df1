/** `bernstein doctor [--workspace DIR] [--key-file F] [--json]`. */
import type { Command } from "../../vendor/commander.js";
import { Output, globalsOf } from "../output.js";
import { openWorkspace } from "../../workspace/layout.js";
import { doctorExitCode, resolveDoctorTarget, runDoctor } from "../../orchestrator/doctor.js";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description(
      "health checks: layout, lock, WAL and audit chains, checkpoint, backlog, claims, ledger, version",
    )
    .option("--workspace <dir>", "folder holding .sdd/, or the state folder itself (default: --sdd)")
    .option("--key-file <file>", "audit key file (never created)")
    .action(async (opts: { workspace?: string; keyFile?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const target = opts.workspace ? await resolveDoctorTarget(opts.workspace) : g.sdd;
      // No workspace there at all is a wrong path (exit 2), not a workspace that failed a check.
      await openWorkspace(target);
      const { checks } = await runDoctor(target, { keyFile: opts.keyFile });
      const code = doctorExitCode(checks);
      out.result({ ok: code === 0, workspace: target, checks }, () => {
        for (const c of checks) {
          out.line(
            `${c.verdict.toUpperCase().padEnd(4)} ${c.name}: ${c.detail}${c.verdict !== "pass" && c.fix ? `\n     fix: ${c.fix}` : ""}`,
          );
        }
        const warns = checks.filter((c) => c.verdict === "warn").length;
        const fails = checks.filter((c) => c.verdict === "fail").length;
        out.line(
          fails
            ? `${fails} check(s) failed, ${warns} warning(s)`
            : `all checks passed${warns ? ` (${warns} warning(s))` : ""}`,
        );
      });
      if (code !== 0) {
        const failed = checks.find((c) => c.verdict === "fail");
        out.failed(code, `doctor: ${failed ? `${failed.name}: ${failed.detail}` : "a check failed"}`);
      }
    });
}
