import type { Command } from "commander";
import { initWorkspace } from "../../workspace/layout.js";
import { Output, globalsOf } from "../output.js";

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("create the .sdd/ workspace layout (idempotent)")
    .action(async (_opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const { workspace, created } = await initWorkspace(g.sdd);
      out.result({ ok: true, sdd: workspace.root, created }, () => {
        out.line(
          created.length
            ? `Initialized workspace at ${workspace.root} (${created.length} folders created)`
            : `Workspace at ${workspace.root} already initialized`,
        );
      });
    });
}
