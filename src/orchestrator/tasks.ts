/**
 * The backlog: one Markdown file with YAML front matter per task, in `backlog/<state>/`.
 * The folder a file is in is the task's state (open → claimed → done | failed; closed archived).
 * Files from the Python original (`T-001-fix-login.md`, plain `.yaml` files) parse too: the id comes
 * from the front matter, never from the file name. Every move is a durable rename.
 */
import { readFileSync, statSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { describeSchemaIssues } from "../errors/schema-issue.js";
import { definedEntries } from "../json/object.js";
import * as YAML from "../vendor/yaml.js";
import * as z from "../vendor/zod.js";
import { atomicWriteFile, durableMkdir, durableRename } from "../workspace/durable.js";
import { inTurns, readSmallFile } from "../workspace/small-files.js";
import { shellWord } from "../workspace/shown-path.js";
import { MAX_DELAY_S } from "../workspace/timer.js";
import { TASK_STATES, type TaskState, type Workspace } from "../workspace/layout.js";
import { loadAgentsConfig, unrunnable } from "./agents.js";
import { MOVED, readBacklogStable } from "./backlog-folders.js";
import { parseFrontMatter } from "./front-matter.js";
import type { TaskSpec } from "./task-spec.js";
import { requireRepo } from "./git/repo.js";
import { taskView } from "./view.js";

export const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** C0 controls and DEL: a line break, or what a terminal would take as a command. */
// eslint-disable-next-line no-control-regex -- those characters are what it finds
export const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;
/** Lower number = higher priority (1 critical, 2 normal, 3 low, as in the Python original). */
export const DEFAULT_PRIORITY = 2;
export const DEFAULT_TIMEOUT_S = 1800;

/** What a task file's front matter may hold. Unknown keys (Python's extras) are kept. */
export const TaskFrontMatterSchema = z.looseObject({
  id: z.string().check(z.regex(TASK_ID_RE, "must be 1-128 of [A-Za-z0-9._-], starting alphanumeric")),
  title: z.string().check(z.minLength(1, "must not be empty")),
  role: z.optional(z.string()),
  priority: z.optional(z.number().check(z.int(), z.minimum(0))),
  depends_on: z.optional(z.array(z.string())),
  command: z.optional(z.string().check(z.minLength(1))),
  prompt: z.optional(z.string().check(z.minLength(1))),
  agent: z.optional(z.string().check(z.minLength(1))),
  max_retries: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(100))),
  // As `task add --timeout`: a longer delay cannot be waited (timer.ts), and is refused, not cut.
  timeout_s: z.optional(
    z.number().check(z.positive(), z.maximum(MAX_DELAY_S, `must be at most ${MAX_DELAY_S} (seconds)`)),
  ),
  worktree: z.optional(z.boolean()),
});

const describeTaskIssue = (issues: z.core.$ZodIssue[], input: unknown): string =>
  describeSchemaIssues(TaskFrontMatterSchema, issues, input, { document: "a mapping (id, title, ...)" });

export interface TaskFile {
  spec: TaskSpec;
  state: TaskState;
  /** Absolute path of the file. */
  file: string;
}

export interface MalformedTaskFile {
  file: string;
  state: TaskState;
  error: string;
}

export class TaskParseError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "TaskParseError";
  }
}

/** Splits `---\n yaml \n---\n body`; a `.yaml`/`.yml` file is all front matter. */
function splitFrontMatter(file: string, text: string): { yaml: string; body: string } {
  if (/\.ya?ml$/i.test(file)) return { yaml: text, body: "" };
  const normalized = text.replace(/^\uFEFF/, "");
  const m = /^---[ \t]*\r?\n([\s\S]*?)\r?\n---[ \t]*(?:\r?\n|$)/.exec(normalized);
  if (!m) {
    // An empty front matter block (`---\n---\n`) is still a block.
    const empty = /^---[ \t]*\r?\n---[ \t]*(?:\r?\n|$)/.exec(normalized);
    if (empty) return { yaml: "", body: normalized.slice(empty[0].length) };
    if (/^---[ \t]*\r?\n/.test(normalized))
      throw new TaskParseError(file, "front matter not closed (no line `---` after the opening one)");
    throw new TaskParseError(file, "no YAML front matter (the file must start with a line `---`)");
  }
  return { yaml: m[1], body: normalized.slice(m[0].length) };
}

export function normalizeSpec(fm: z.infer<typeof TaskFrontMatterSchema>, body: string): TaskSpec {
  return {
    id: fm.id,
    title: fm.title,
    role: fm.role ?? "backend",
    priority: fm.priority ?? DEFAULT_PRIORITY,
    depends_on: [...new Set(fm.depends_on ?? [])],
    command: fm.command ?? null,
    prompt: fm.prompt ?? null,
    agent: fm.agent ?? null,
    max_retries: fm.max_retries ?? 0,
    timeout_s: fm.timeout_s ?? DEFAULT_TIMEOUT_S,
    body,
    ...(fm.worktree === true ? { worktree: true as const } : {}),
  };
}

/** Parses one task file's text; throws TaskParseError naming the file. */
export function parseTaskText(file: string, text: string): TaskSpec {
  const parts = splitFrontMatter(file, text);
  let doc: unknown;
  try {
    doc = parseFrontMatter(parts.yaml);
  } catch (err) {
    throw new TaskParseError(file, `bad YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new TaskParseError(file, "front matter is not a YAML mapping");
  }
  // YAML reads `id: 001` as a number; ids are strings.
  const raw = { ...(doc as Record<string, unknown>) };
  if (typeof raw.id === "number") raw.id = String(raw.id);
  if (Array.isArray(raw.depends_on)) raw.depends_on = raw.depends_on.map((d) => String(d));
  const parsed = TaskFrontMatterSchema.safeParse(raw);
  if (!parsed.success) throw new TaskParseError(file, describeTaskIssue(parsed.error.issues, raw));
  return normalizeSpec(parsed.data, parts.body);
}

/**
 * Refuses a file in `open/` that every user may write (`chmod 666`, an editor under `umask 000`):
 * another local user could change its command before `start` takes it and runs it as its owner
 * (the folders are held to the same rule: refuseOpenToOthers). The group's bit is the owner's
 * choice, as for the folders.
 */
function refuseWritableByOthers(file: string, state: TaskState, mode: number): void {
  if (state !== "open" || (mode & 0o002) === 0) return;
  throw new TaskParseError(
    file,
    `writable by every user (mode ${(mode & 0o7777).toString(8)}): another user could change what it runs; not taken until: chmod o-w ${shellWord(file)}`,
  );
}

/** Reads and parses the task file in the folder of `state`; throws TaskParseError naming the file. */
export async function readTaskFile(file: string, state: TaskState): Promise<TaskSpec> {
  refuseWritableByOthers(file, state, (await stat(file)).mode);
  const text = await readSmallFile(file, "utf8");
  return parseTaskText(file, text);
}

/** Front matter + body as written by `task add` (fields in a stable, readable order). */
export function renderTask(spec: TaskSpec): string {
  const fm: Record<string, unknown> = {
    id: spec.id,
    title: spec.title,
    role: spec.role,
    priority: spec.priority,
  };
  if (spec.depends_on.length) fm.depends_on = spec.depends_on;
  if (spec.command !== null) fm.command = spec.command;
  if (spec.prompt !== null) fm.prompt = spec.prompt;
  if (spec.agent !== null) fm.agent = spec.agent;
  fm.max_retries = spec.max_retries;
  fm.timeout_s = spec.timeout_s;
  if (spec.worktree) fm.worktree = true;
  return `---\n${YAML.stringify(fm)}---\n${spec.body}`;
}

export interface BacklogScan {
  tasks: TaskFile[];
  malformed: MalformedTaskFile[];
  /** Ids found in more than one file (any folders). */
  duplicates: Map<string, TaskFile[]>;
}

/**
 * Reads every task file of the given folders, as of one moment (readBacklogStable: a running
 * orchestrator's move never shows a task twice or not at all); malformed files are reported, never
 * touched.
 */
export async function scanBacklog(
  ws: Workspace,
  states: readonly TaskState[] = TASK_STATES,
): Promise<BacklogScan> {
  // A read raced by a move is read again: files left as they were are not parsed again (a rename
  // keeps the inode and the times; the path is part of the key, as the folder is the state).
  const seen = new Map<
    string,
    { key: string; read: { task: TaskFile } | { malformed: MalformedTaskFile } }
  >();
  const readOne = (file: string, state: TaskState) => {
    let key: string | undefined;
    try {
      const st = statSync(file);
      if (!st.isFile()) return undefined;
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
      const known = seen.get(file);
      if (known?.key === key) return known.read;
      refuseWritableByOthers(file, state, st.mode);
      const read = { task: { spec: parseTaskText(file, readFileSync(file, "utf8")), state, file } };
      seen.set(file, { key, read });
      return read;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return MOVED;
      const error = err instanceof TaskParseError ? err.message : `${file}: ${(err as Error).message}`;
      const read = { malformed: { file, state, error } };
      if (key !== undefined) seen.set(file, { key, read });
      return read;
    }
  };
  const { tasks, malformed } = await readBacklogStable(ws, states, async (listing) => {
    const tasks: TaskFile[] = [];
    const malformed: MalformedTaskFile[] = [];
    for (const { state, names } of listing) {
      const files = names.map((name) => path.join(ws.backlogDir(state), name));
      const read = await inTurns(files, (file) => readOne(file, state));
      for (const r of read) {
        if (r === MOVED) return MOVED;
        if (r && "task" in r) tasks.push(r.task);
        else if (r) malformed.push(r.malformed);
      }
    }
    return { tasks, malformed };
  });
  const byId = new Map<string, TaskFile[]>();
  for (const t of tasks) byId.set(t.spec.id, [...(byId.get(t.spec.id) ?? []), t]);
  const duplicates = new Map([...byId].filter(([, v]) => v.length > 1));
  return { tasks, malformed, duplicates };
}

/** A cycle through the dependency graph as a list of ids (first = last), or null. */
export function findCycle(graph: Map<string, readonly string[]>): string[] | null {
  const WHITE = 0;
  const GREY = 1;
  const BLACK = 2;
  const color = new Map<string, number>();
  for (const start of [...graph.keys()].sort()) {
    if ((color.get(start) ?? WHITE) !== WHITE) continue;
    // Iterative DFS: the machine may hold long dependency chains.
    const stack: { id: string; next: number }[] = [{ id: start, next: 0 }];
    color.set(start, GREY);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const deps = graph.get(top.id) ?? [];
      if (top.next >= deps.length) {
        color.set(top.id, BLACK);
        stack.pop();
        continue;
      }
      const dep = deps[top.next++];
      const c = color.get(dep) ?? WHITE;
      if (c === GREY) {
        const from = stack.findIndex((f) => f.id === dep);
        return [...stack.slice(from).map((f) => f.id), dep];
      }
      if (c === WHITE && graph.has(dep)) {
        color.set(dep, GREY);
        stack.push({ id: dep, next: 0 });
      }
    }
  }
  return null;
}

/**
 * Every cycle of the graph, each as `findCycle` gives it; after one is found its members leave the
 * graph, so each id is in at most one cycle and the search ends.
 */
export function findCycles(graph: Map<string, readonly string[]>): string[][] {
  const rest = new Map(graph);
  const cycles: string[][] = [];
  for (let cycle = findCycle(rest); cycle; cycle = findCycle(rest)) {
    cycles.push(cycle);
    for (const id of cycle) rest.delete(id);
  }
  return cycles;
}

/** Sortable default id: time in base 36 (creation order) plus 4 random hex digits. */
export function newTaskId(now = Date.now()): string {
  const rand = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, "0");
  return `T-${now.toString(36)}${rand}`;
}

export interface AddTaskInput {
  title: string;
  command?: string;
  prompt?: string;
  id?: string;
  priority?: number;
  dependsOn?: string[];
  agent?: string;
  maxRetries?: number;
  timeoutS?: number;
  role?: string;
  body?: string;
  /** Run in a git worktree of the repository holding the workspace, merged on success. */
  worktree?: boolean;
}

/**
 * Validates and writes a new task into `backlog/open/<id>.md` (atomic replace of a temp file).
 * Rejects duplicate ids, unknown dependencies and dependency cycles; nothing is written then.
 * The running orchestrator adopts the file with a `task_created` decision. `failedDependencies`
 * are the dependencies already failed: the task is blocked until they are done, which the caller
 * warns about (a failed task may still be run again, so it is no refusal).
 */
export async function addTask(
  ws: Workspace,
  input: AddTaskInput,
): Promise<TaskFile & { failedDependencies: string[] }> {
  if ((input.command === undefined) === (input.prompt === undefined)) {
    throw new UserError("task add: give exactly one of --command CMD or --prompt TEXT", ExitCode.USAGE);
  }
  // Blank is as empty as "" (which the schema refuses): `task list` would show nothing to tell it by.
  if (input.title.trim() === "")
    throw new UserError("task add: title: must not be empty or only spaces", ExitCode.USAGE);
  const control = CONTROL_CHAR.exec(input.title)?.[0];
  if (control !== undefined) {
    // One line per task in `task list`, and the subject of the task's commits: a line break in an
    // argument is a quoting slip far more often than a wish. Task files may still hold one.
    const what = /[\r\n]/.test(control)
      ? "a line break"
      : `a control character (U+${control.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")})`;
    throw new UserError(`task add: the title must be one line of text; it holds ${what}`, ExitCode.USAGE);
  }
  const id = input.id ?? newTaskId();
  const raw = {
    id,
    title: input.title,
    role: input.role,
    priority: input.priority,
    depends_on: input.dependsOn,
    command: input.command,
    prompt: input.prompt,
    agent: input.agent ?? (input.command !== undefined ? "shell" : undefined),
    max_retries: input.maxRetries,
    timeout_s: input.timeoutS,
    worktree: input.worktree ? true : undefined,
  };
  if (input.worktree) await requireRepo(ws.projectDir, "--worktree");
  const parsed = TaskFrontMatterSchema.safeParse(definedEntries(raw));
  if (!parsed.success)
    throw new UserError(`task add: ${describeTaskIssue(parsed.error.issues, raw)}`, ExitCode.USAGE);
  const spec = normalizeSpec(parsed.data, input.body ?? "");
  // A task no configured agent can run would only fail at `start`: refuse it now.
  const refused = unrunnable(await loadAgentsConfig(ws), spec);
  if (refused) throw new UserError(`task add: ${refused.reason}: ${refused.fix}`, ExitCode.USAGE);
  const scan = await scanBacklog(ws);
  const graph = new Map<string, readonly string[]>();
  for (const t of scan.tasks) graph.set(t.spec.id, t.spec.depends_on);
  if (graph.has(spec.id)) {
    const existing = scan.tasks.find((t) => t.spec.id === spec.id)!;
    throw new UserError(
      `task add: a task with id ${spec.id} already exists (${existing.file})`,
      ExitCode.USAGE,
    );
  }
  // A task whose file is gone (deleted, or never written back) is still the WAL's: a new file
  // under its id would be taken for it and filed under its state without running.
  // Loaded here only: `task list` and the task parser (status, start's intake) need no WAL reader.
  const { loadState } = await import("../checkpoint/load-state.js");
  const known = taskView((await loadState(ws)).state, spec.id);
  if (known) {
    throw new UserError(
      `task add: id ${spec.id} is already used by a task the WAL records as ${known.state} (its file is in no backlog folder); task ids are never reused: choose another --id`,
      ExitCode.USAGE,
    );
  }
  const unknown = spec.depends_on.filter((d) => d !== spec.id && !graph.has(d));
  if (unknown.length) {
    throw new UserError(
      `task add: unknown dependency ${unknown.join(", ")} (no task with that id)`,
      ExitCode.USAGE,
    );
  }
  graph.set(spec.id, spec.depends_on);
  const cycle = findCycle(graph);
  if (cycle) throw new UserError(`task add: dependency cycle ${cycle.join(" -> ")}`, ExitCode.USAGE);
  await durableMkdir(ws.backlogDir("open"));
  const file = path.join(ws.backlogDir("open"), `${spec.id}.md`);
  await atomicWriteFile(file, renderTask(spec));
  const failed = new Set(scan.tasks.filter((t) => t.state === "failed").map((t) => t.spec.id));
  return { spec, state: "open", file, failedDependencies: spec.depends_on.filter((d) => failed.has(d)) };
}

/** Moves a task file to another state folder (durable rename); returns the new path. */
export async function moveTaskFile(ws: Workspace, file: string, to: TaskState): Promise<string> {
  const target = path.join(ws.backlogDir(to), path.basename(file));
  if (path.resolve(file) === path.resolve(target)) return target;
  await durableMkdir(ws.backlogDir(to));
  await durableRename(file, target);
  return target;
}
