/**
 * Agent adapters from `.sdd/config/agents.yaml`: how a task becomes a process.
 *
 * - `shell`: the task's `command` run with `sh -c` in the workspace root (the folder holding `.sdd/`).
 * - `template`: an argv template for a CLI coding agent; `{prompt}`, `{task_id}` and `{workdir}` are
 *   substituted inside each argument (no shell, so a prompt needs no quoting).
 *
 * Built-in templates for claude, codex, gemini and aider are used when agents.yaml does not name
 * them (documented in docs/orchestrator.md); a workspace file overrides or adds agents.
 */
import { access, readFile } from "node:fs/promises";
import { constants as fsc } from "node:fs";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { describeSchemaIssues } from "../errors/schema-issue.js";
import * as YAML from "../vendor/yaml.js";
import * as z from "../vendor/zod.js";
import { durableCreate } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import type { TaskSpec } from "./task-spec.js";

const AgentSchema = z.discriminatedUnion("adapter", [
  z.strictObject({ adapter: z.literal("shell"), env: z.optional(z.record(z.string(), z.string())) }),
  z.strictObject({
    adapter: z.literal("template"),
    command: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
    env: z.optional(z.record(z.string(), z.string())),
  }),
]);
export type AgentConfig = z.infer<typeof AgentSchema>;

/** Strict, like the configuration file: a misspelt key is named, not silently ignored. */
const AgentsFileSchema = z.strictObject({
  default: z.optional(z.string().check(z.minLength(1))),
  agents: z.optional(z.record(z.string(), AgentSchema)),
});

/** Templates for the common agent CLIs, in their non-interactive modes. */
export const BUILTIN_AGENTS: Record<string, AgentConfig> = {
  shell: { adapter: "shell" },
  claude: {
    adapter: "template",
    command: ["claude", "-p", "{prompt}", "--output-format", "json", "--dangerously-skip-permissions"],
  },
  codex: { adapter: "template", command: ["codex", "exec", "--full-auto", "-C", "{workdir}", "{prompt}"] },
  gemini: { adapter: "template", command: ["gemini", "--yolo", "-p", "{prompt}"] },
  aider: {
    adapter: "template",
    command: ["aider", "--yes-always", "--no-auto-commits", "--message", "{prompt}"],
  },
};

export interface AgentsConfig {
  defaultAgent: string;
  agents: Record<string, AgentConfig>;
  /** Where the config came from (a path, or "built-in"). */
  source: string;
  /** The workspace's agents.yaml, whether or not it exists (what to edit). */
  file: string;
}

export function agentsFile(ws: Workspace): string {
  return path.join(ws.configDir, "agents.yaml");
}

/** Loads agents.yaml merged over the built-ins; a malformed file is a UserError naming it. */
export async function loadAgentsConfig(ws: Workspace): Promise<AgentsConfig> {
  const file = agentsFile(ws);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      return { defaultAgent: "shell", agents: { ...BUILTIN_AGENTS }, source: "built-in", file };
    }
    throw err;
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text) ?? {};
  } catch (err) {
    throw new UserError(`${file}: bad YAML: ${(err as Error).message.split("\n")[0]}`, ExitCode.USAGE);
  }
  const parsed = AgentsFileSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = describeSchemaIssues(AgentsFileSchema, parsed.error.issues, doc, {
      document: "a mapping (default, agents)",
    });
    throw new UserError(`${file}: ${issue}`, ExitCode.USAGE);
  }
  const agents = { ...BUILTIN_AGENTS, ...(parsed.data.agents ?? {}) };
  const defaultAgent = parsed.data.default ?? "shell";
  if (!agents[defaultAgent])
    throw new UserError(`${file}: default agent ${defaultAgent} is not defined`, ExitCode.USAGE);
  return { defaultAgent, agents, source: file, file };
}

/** What the wrapper runs: an argv (no shell) or `sh -c`, with its working folder and env. */
export interface Invocation {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

export type ResolveResult =
  { ok: true; invocation: Invocation; agent: string } | { ok: false; reason: string };

function substitute(arg: string, vars: Record<string, string>): string {
  return arg.replace(/\{(prompt|task_id|workdir)\}/g, (_m, k: string) => vars[k]);
}

/** Finds an executable on PATH (or checks an explicit path); null when missing. */
export async function findExecutable(bin: string, envPath = process.env.PATH ?? ""): Promise<string | null> {
  const candidates = bin.includes("/")
    ? [bin]
    : envPath
        .split(":")
        .filter(Boolean)
        .map((d) => path.join(d, bin));
  for (const c of candidates) {
    try {
      await access(c, fsc.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  return null;
}

type RunnableFields = Pick<TaskSpec, "id" | "agent" | "command" | "prompt" | "body">;

/** The agent a task runs under: its own, else shell for a command, else agents.yaml's default. */
export function agentNameFor(cfg: AgentsConfig, task: RunnableFields): string {
  return task.agent ?? (task.command !== null ? "shell" : cfg.defaultAgent);
}

/**
 * Why no configured agent can run `task` whatever is installed (its agent is unknown, a shell
 * agent without a command, a template agent without a prompt), with what to configure instead;
 * undefined when its agent can. `task add` refuses such a task; a hand-written one fails
 * terminally when it runs.
 */
export function unrunnable(
  cfg: AgentsConfig,
  task: RunnableFields,
): { reason: string; fix: string } | undefined {
  const name = agentNameFor(cfg, task);
  const agent = cfg.agents[name];
  const templates = Object.keys(cfg.agents).filter((n) => cfg.agents[n]!.adapter === "template");
  const clis = `--agent NAME for a coding-agent CLI (${templates.join(", ")})`;
  if (!agent) {
    return {
      reason: `unknown agent ${name} (not in ${cfg.source} nor built in)`,
      fix: `define it under "agents:" in ${cfg.file}, or use one of ${Object.keys(cfg.agents).join(", ")}`,
    };
  }
  if (agent.adapter === "shell" && task.command === null) {
    return task.agent === null
      ? {
          reason: `the default agent is ${name}, which runs a --command and the task has none`,
          fix: `pass ${clis}, or set "default: NAME" in ${cfg.file}`,
        }
      : {
          reason: `agent ${name} runs a --command and the task has none`,
          fix: `give --command CMD, or ${clis}`,
        };
  }
  if (agent.adapter === "template" && !(task.prompt ?? task.body.trim())) {
    return {
      reason: `agent ${name} runs a prompt and the task has none`,
      fix: "give --prompt TEXT, or --agent shell to run a --command",
    };
  }
  return undefined;
}

/**
 * The binary of a template agent that is not on PATH now (`task add` warns: it may be installed
 * before `start`), or undefined.
 */
export async function missingBinary(cfg: AgentsConfig, task: RunnableFields): Promise<string | undefined> {
  const agent = cfg.agents[agentNameFor(cfg, task)];
  if (agent?.adapter !== "template") return undefined;
  return (await findExecutable(agent.command[0]!)) ? undefined : agent.command[0];
}

/**
 * Turns a task into an invocation. Failures that no retry can fix (unknown agent, missing binary,
 * a shell task without a command) come back as `{ok: false, reason}` and fail the task terminally.
 */
export async function resolveInvocation(
  cfg: AgentsConfig,
  ws: Workspace,
  task: TaskSpec,
  workdir = ws.projectDir,
): Promise<ResolveResult> {
  const refused = unrunnable(cfg, task);
  if (refused) return { ok: false, reason: refused.reason };
  const name = agentNameFor(cfg, task);
  const agent = cfg.agents[name]!;
  if (agent.adapter === "shell") {
    return {
      ok: true,
      agent: name,
      invocation: { argv: ["sh", "-c", task.command!], cwd: workdir, env: agent.env ?? {} },
    };
  }
  const prompt = (task.prompt ?? task.body.trim())!;
  const vars = { prompt, task_id: task.id, workdir };
  const argv = agent.command.map((a) => substitute(a, vars));
  const found = await findExecutable(argv[0]);
  if (!found)
    return {
      ok: false,
      reason: `agent binary not found: ${argv[0]} (agent ${name}; is it installed and on PATH?)`,
    };
  return { ok: true, agent: name, invocation: { argv, cwd: workdir, env: agent.env ?? {} } };
}

/**
 * The agents.yaml that `init` writes: the defaults spelled out, the built-in templates as
 * comments to copy from (generated from BUILTIN_AGENTS, so it never disagrees with them).
 */
export function agentsFileTemplate(): string {
  const templates = new YAML.Document(
    Object.fromEntries(Object.entries(BUILTIN_AGENTS).filter(([, a]) => a.adapter === "template")),
  );
  YAML.visit(templates, {
    Seq(_key, node) {
      node.flow = true;
    },
  });
  const commented = templates
    .toString({ lineWidth: 0 })
    .trimEnd()
    .split("\n")
    .map((line) => `  # ${line}`)
    .join("\n");
  return [
    '# Agents: how a task becomes a process (docs/orchestrator.md, "Agents").',
    "# A task with --command runs under `shell`. A task with --prompt runs under its --agent,",
    "# else under `default`. The templates below are built in (usable as --agent NAME without",
    "# being listed here); uncomment one to change it, or add your own. {prompt}, {task_id} and",
    "# {workdir} are substituted inside each argument; no shell is involved.",
    "default: shell # e.g. claude: --prompt tasks then need no --agent",
    "agents:",
    '  shell: { adapter: shell } # sh -c "<command>" in the folder holding .sdd/',
    commented,
    "",
  ].join("\n");
}

/** Writes agentsFileTemplate() to the workspace's agents.yaml unless one exists; true if written. */
export async function writeAgentsFileTemplate(ws: Workspace): Promise<boolean> {
  try {
    await durableCreate(agentsFile(ws), agentsFileTemplate());
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}
