/**
 * `bernstein audit verify [--key-file F]`: streams every day file of the audit chain and names
 * `file:line` for every break. Exit 0 intact, 1 on any break, 2 when no key is found (it never
 * creates one: a new key would make every existing entry fail).
 */
import type { Command } from "../../vendor/commander.js";
import { loadAuditKey } from "../../audit/key.js";
import { auditBreakSummary, verifyAuditLog } from "../../audit/verify.js";
import { shown } from "../../workspace/shown-path.js";
import { ExitCode } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { openWorkspace } from "../../workspace/layout.js";

export function registerAudit(program: Command): void {
  const audit = program.command("audit").description("HMAC-chained audit log");
  audit
    .command("verify")
    .description("verify the audit chain across all day files (exit 1 on any break)")
    .option(
      "--key-file <file>",
      "audit key (default $BERNSTEIN_AUDIT_KEY_PATH, $XDG_STATE_HOME, ~/.local/state)",
    )
    .action(async (opts: { keyFile?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const key = await loadAuditKey({ keyFile: opts.keyFile, create: false });
      const result = await verifyAuditLog(ws, key);
      const broken = () => auditBreakSummary(result, `the audit key ${shown(key.path)}`, shown);
      out.result(
        {
          ok: result.ok,
          entries: result.entries,
          files: result.files.length,
          last_hmac: result.last_hmac,
          key_path: key.path,
          signed_with_another_key: result.signed_with_another_key,
          errors: result.errors,
        },
        () => {
          if (result.signed_with_another_key) {
            out.line(`audit chain BROKEN: ${broken()}`);
            out.line("fix: give the key that signed it: --key-file FILE or $BERNSTEIN_AUDIT_KEY_PATH");
            return;
          }
          for (const e of result.errors) out.line(`${shown(e.file)}:${e.line}: ${e.message}`);
          out.line(
            result.ok
              ? `audit chain intact: ${result.entries} entries in ${result.files.length} file(s)`
              : `audit chain BROKEN: ${result.errors.length} problem(s) in ${result.entries} entries, ${result.files.length} file(s)`,
          );
        },
      );
      if (!result.ok) {
        if (out.opts.quiet && result.signed_with_another_key) {
          process.stderr.write(`bernstein: audit chain BROKEN: ${broken()}\n`);
        } else if (out.opts.quiet) {
          for (const e of result.errors) process.stderr.write(`${shown(e.file)}:${e.line}: ${e.message}\n`);
        }
        process.exitCode = ExitCode.CHECK_FAILED;
      }
    });
}
