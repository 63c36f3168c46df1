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
import YAML from "yaml";
import { z } from "zod";
import { ExitCode, UserError } from "../cli/errors.js";
import type { Workspace } from "../workspace/layout.js";
import type { TaskSpec } from "./tasks.js";

const AgentSchema = z.discriminatedUnion("adapter", [
  z.object({ adapter: z.literal("shell"), env: z.record(z.string(), z.string()).optional() }),
  z.object({
    adapter: z.literal("template"),
    command: z.array(z.string().min(1)).min(1),
    env: z.record(z.string(), z.string()).optional(),
  }),
]);
export type AgentConfig = z.infer<typeof AgentSchema>;

const AgentsFileSchema = z.object({
  default: z.string().min(1).optional(),
  agents: z.record(z.string(), AgentSchema).optional(),
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
}

export function agentsFile(ws: Workspace): string {
  return ws.p("config", "agents.yaml");
}

/** Loads agents.yaml merged over the built-ins; a malformed file is a UserError naming it. */
export async function loadAgentsConfig(ws: Workspace): Promise<AgentsConfig> {
  const file = agentsFile(ws);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      return { defaultAgent: "shell", agents: { ...BUILTIN_AGENTS }, source: "built-in" };
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
    const issue = parsed.error.issues[0];
    throw new UserError(`${file}: ${issue.path.join(".") || "file"}: ${issue.message}`, ExitCode.USAGE);
  }
  const agents = { ...BUILTIN_AGENTS, ...(parsed.data.agents ?? {}) };
  const defaultAgent = parsed.data.default ?? "shell";
  if (!agents[defaultAgent])
    throw new UserError(`${file}: default agent ${defaultAgent} is not defined`, ExitCode.USAGE);
  return { defaultAgent, agents, source: file };
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

/**
 * Turns a task into an invocation. Failures that no retry can fix (unknown agent, missing binary,
 * a shell task without a command) come back as `{ok: false, reason}` and fail the task terminally.
 */
export async function resolveInvocation(
  cfg: AgentsConfig,
  ws: Workspace,
  task: TaskSpec,
): Promise<ResolveResult> {
  const name = task.agent ?? (task.command !== null ? "shell" : cfg.defaultAgent);
  const agent = cfg.agents[name];
  if (!agent) return { ok: false, reason: `unknown agent ${name} (not in ${cfg.source} nor built in)` };
  const workdir = ws.projectDir;
  if (agent.adapter === "shell") {
    if (task.command === null)
      return { ok: false, reason: `agent ${name} needs a command; task ${task.id} has none` };
    return {
      ok: true,
      agent: name,
      invocation: { argv: ["sh", "-c", task.command], cwd: workdir, env: agent.env ?? {} },
    };
  }
  const prompt = task.prompt ?? task.body.trim();
  if (!prompt) return { ok: false, reason: `agent ${name} needs a prompt; task ${task.id} has none` };
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
