/** `bernstein task add` and `bernstein task list`. */
import type { Command } from "../../vendor/commander.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { intOption, secondsOption } from "../number-option.js";
import { Output, globalsOf } from "../output.js";
import { TASK_STATES, type TaskState, openWorkspace } from "../../workspace/layout.js";
import { CONTROL_CHAR, addTask, scanBacklog } from "../../orchestrator/tasks.js";
import { loadAgentsConfig, missingBinary } from "../../orchestrator/agents.js";

const CONTROL_CHARS = new RegExp(CONTROL_CHAR.source, "g");
const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * A title on one line of the listing: a hand-written task file may hold a multi-line title (YAML
 * `|`) or control characters, shown escaped (`\n`) rather than breaking the one line per task or
 * driving the terminal. `--json` has the title itself.
 */
function shownTitle(title: string): string {
  return title.replace(
    CONTROL_CHARS,
    (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

export function registerTask(program: Command): void {
  const task = program.command("task").description("the backlog: add and list tasks");

  task
    .command("add")
    .description("add a task to backlog/open (the orchestrator adopts it with a task_created decision)")
    .argument("<title>", "task title")
    .option("--command <cmd>", "shell command the task runs (shell agent)")
    .option("--prompt <text>", "prompt for a coding-agent CLI")
    .option("--id <id>", "task id (default: a sortable generated id)")
    .option("--priority <n>", "priority, lower runs first (default 2)", intOption("--priority"))
    .option("--depends-on <id>", "a task that must be done first (repeatable)", collect)
    .option("--agent <name>", "agent from .sdd/config/agents.yaml (default: shell for --command)")
    .option("--max-retries <n>", "retries after a failed attempt (default 0)", intOption("--max-retries"))
    .option(
      "--timeout <s>",
      "seconds before the attempt is killed (default 1800)",
      secondsOption("--timeout", "positive"),
    )
    .option("--role <role>", "role label (default backend)")
    .option("--worktree", "run in its own git worktree; its work is merged into the target branch on success")
    .action(async (title: string, opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const t = await addTask(ws, {
        title,
        command: opts.command,
        prompt: opts.prompt,
        id: opts.id,
        priority: opts.priority,
        dependsOn: opts.dependsOn,
        agent: opts.agent,
        maxRetries: opts.maxRetries,
        timeoutS: opts.timeout,
        role: opts.role,
        worktree: Boolean(opts.worktree),
      });
      for (const dep of t.failedDependencies)
        out.warn(
          `task ${t.spec.id} depends on ${dep}, which has failed: it stays blocked until ${dep} is done`,
        );
      const missing = await missingBinary(await loadAgentsConfig(ws), t.spec);
      if (missing)
        out.warn(
          `${missing} is not on PATH: task ${t.spec.id} fails unless it is installed before \`start\``,
        );
      out.result({ ok: true, id: t.spec.id }, () => out.line(t.spec.id));
    });

  task
    .command("list")
    .description("list tasks by state (the folder a task file is in is its state)")
    .option("--state <state>", `only this state (${TASK_STATES.join(", ")})`)
    .action(async (opts: { state?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      if (opts.state !== undefined && !(TASK_STATES as readonly string[]).includes(opts.state)) {
        throw new UserError(
          `task list: unknown state ${opts.state} (one of ${TASK_STATES.join(", ")})`,
          ExitCode.USAGE,
        );
      }
      const ws = await openWorkspace(g.sdd);
      const states = opts.state ? [opts.state as TaskState] : TASK_STATES;
      const scan = await scanBacklog(ws, states);
      const rows = scan.tasks
        .map((t) => ({
          id: t.spec.id,
          state: t.state,
          title: t.spec.title,
          priority: t.spec.priority,
          depends_on: t.spec.depends_on,
          agent: t.spec.agent,
          file: t.file,
        }))
        .sort(
          (a, b) =>
            TASK_STATES.indexOf(a.state) - TASK_STATES.indexOf(b.state) ||
            (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
        );
      for (const m of scan.malformed) out.warn(`malformed task file left in place: ${m.error}`);
      out.result({ ok: true, tasks: rows, malformed: scan.malformed }, () => {
        if (!rows.length) out.line("no tasks");
        for (const r of rows)
          out.line(`${r.state.padEnd(8)} ${r.id.padEnd(24)} p${r.priority}  ${shownTitle(r.title)}`);
      });
    });
}
