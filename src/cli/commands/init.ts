import type { Command } from "../../vendor/commander.js";
import { initWorkspace } from "../../workspace/layout.js";
import { agentsFile, writeAgentsFileTemplate } from "../../orchestrator/agents.js";
import { shown } from "../../workspace/shown-path.js";
import { Output, globalsOf } from "../output.js";

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("create the .sdd/ workspace layout (idempotent)")
    .action(async (_opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const { workspace, created } = await initWorkspace(g.sdd);
      // Commented, so that running a coding agent is an edit away (an existing file is kept).
      const wroteAgents = await writeAgentsFileTemplate(workspace);
      out.result(
        {
          ok: true,
          sdd: workspace.root,
          created,
          agents_file: agentsFile(workspace),
          agents_file_written: wroteAgents,
        },
        () => {
          out.line(
            created.length
              ? `Initialized workspace at ${workspace.shownRoot} (${created.length} folders created)`
              : `Workspace at ${workspace.shownRoot} already initialized`,
          );
          if (wroteAgents)
            out.line(
              `Agents: ${shown(agentsFile(workspace))} (edit it to run --prompt tasks with a coding agent)`,
            );
        },
      );
    });
}
