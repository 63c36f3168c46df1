/**
 * The `.sdd/` layout: which folders a workspace has, and where each piece of state lives.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { durableMkdir } from "./durable.js";
import { refuseMidRestore } from "./restore-journal.js";
import { shellWord, shown } from "./shown-path.js";

/** Task states; the folder a task file is in is its state. */
export const TASK_STATES = ["open", "claimed", "done", "failed", "closed", "deferred", "manual"] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Every folder of a workspace (relative to `.sdd/`), the compat README's list plus ours. */
export const WORKSPACE_DIRS = [
  ...TASK_STATES.map((s) => `backlog/${s}`),
  "metrics",
  "traces",
  "memory",
  "sessions",
  "decisions",
  "docs",
  "config",
  "archive",
  "agents",
  "index",
  "caching",
  "models",
  "audit",
  "runs",
  "runtime",
  "runtime/wal",
  "runtime/checkpoints",
  "runtime/completed",
  "runtime/agents",
  "logs",
] as const;

/**
 * A run's WAL is `runtime/wal/<run-id>` + this suffix. Only `Workspace.walFile` builds such a name;
 * `src/wal/run-files.ts` reads run ids back from names and lists the runs of a folder.
 */
export const WAL_FILE_SUFFIX = ".wal.jsonl";

/**
 * Run ids name files (`runtime/wal/<run-id>.wal.jsonl`), and many come from outside: a leader, an
 * archive's key names, a checkpoint, file names on disk. Ours are `run-<time>Z-<4 hex>`, Python's
 * `run-golden`-like: one file name of letters, digits, `.`, `_`, `-`, beginning with a letter or
 * digit, so none can be `..`, hold a separator, or hide as a dot file.
 */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export const isRunId = (runId: unknown): runId is string => typeof runId === "string" && RUN_ID.test(runId);

/** Why `runId` is no run id, as the end of a line naming where it came from; undefined for a run id. */
export function runIdProblem(runId: unknown): string | undefined {
  if (isRunId(runId)) return undefined;
  return `${JSON.stringify(runId)} is not a run id (letters, digits, '.', '_' and '-', at most 200, beginning with a letter or digit)`;
}

/** Paths of one workspace. `root` is the `.sdd/` folder; `projectDir` the folder that holds it. */
export class Workspace {
  readonly root: string;
  constructor(sddDir: string) {
    this.root = path.resolve(sddDir);
  }
  /** The root as people are shown it (relative to the working folder when inside it). */
  get shownRoot(): string {
    return shown(this.root);
  }
  get projectDir(): string {
    return path.dirname(this.root);
  }
  p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }
  get runtimeDir(): string {
    return this.p("runtime");
  }
  get walDir(): string {
    return this.p("runtime", "wal");
  }
  /** Every caller checks a run id from outside first; this refusal keeps an unchecked one inside `walDir`. */
  walFile(runId: string): string {
    const problem = runIdProblem(runId);
    if (problem) throw new UserError(`${this.shownRoot}: ${problem}`, ExitCode.CORRUPT);
    return path.join(this.walDir, runId + WAL_FILE_SUFFIX);
  }
  get checkpointsDir(): string {
    return this.p("runtime", "checkpoints");
  }
  get completedDir(): string {
    return this.p("runtime", "completed");
  }
  /** One record per agent process (`<agent-id>.json`). */
  get agentRecordsDir(): string {
    return this.p("runtime", "agents");
  }
  /** Requests to a running orchestrator (stop). */
  get signalsDir(): string {
    return this.p("runtime", "signals");
  }
  /** Snapshot requests of `dr backup` to a running orchestrator. */
  get snapshotDir(): string {
    return this.p("runtime", "snapshot");
  }
  /** Epoch, role and base snapshot of WAL replication. */
  get replicationDir(): string {
    return this.p("runtime", "replication");
  }
  get lockFile(): string {
    return this.p("runtime", "bernstein.pid");
  }
  get auditDir(): string {
    return this.p("audit");
  }
  get costLedger(): string {
    return this.p("metrics", "cost-ledger.jsonl");
  }
  get sessionsDir(): string {
    return this.p("sessions");
  }
  backlogDir(state: TaskState): string {
    return this.p("backlog", state);
  }
  get configDir(): string {
    return this.p("config");
  }
  get logsDir(): string {
    return this.p("logs");
  }
  /** One log per agent process (`<agent-id>.log`). */
  get agentLogsDir(): string {
    return this.p("logs", "agents");
  }
  /** The records of backups and drills (`backups.jsonl`, `drills.jsonl`). */
  get runsDir(): string {
    return this.p("runs");
  }
  /** The DR runbooks replication writes. */
  get runbooksDir(): string {
    return this.p("docs", "runbooks");
  }
}

/** The `.sdd` folder from `--sdd`, then `$BERNSTEIN_SDD`, then `./.sdd`. */
export function resolveSddDir(flag?: string): string {
  // An empty variable counts as unset (the shells' convention): path.resolve("") is the current
  // folder, where init would lay a workspace out among the project's files.
  return path.resolve(flag ?? (process.env.BERNSTEIN_SDD || ".sdd"));
}

/**
 * The top-level folders that together mark a folder as a bernstein workspace: `runtime/` (every
 * command's state) and `backlog/` (the tasks). `init` makes both, a restore adds the layout's
 * folders to what it restores, and the Python original's `.sdd` holds both as well; a project
 * folder hardly ever has the two. A restore replaces only such a folder (or an empty one).
 */
export const WORKSPACE_MARKER_DIRS = ["runtime", "backlog"] as const;

/** Whether `p` is a folder (false when it is missing or anything else). */
export const isFolder = (p: string): Promise<boolean> =>
  stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );

/** Whether `dir` is a bernstein workspace (a `.sdd` folder): it holds every WORKSPACE_MARKER_DIRS folder. */
export async function isWorkspaceDir(dir: string): Promise<boolean> {
  for (const marker of WORKSPACE_MARKER_DIRS) if (!(await isFolder(path.join(dir, marker)))) return false;
  return true;
}

/**
 * Refuses a folder that is no workspace but holds one as its `.sdd/`: the project folder given for
 * its workspace. Opening it would find nothing, and laying a workspace out in it would make a
 * second, empty one beside the project's files.
 */
async function refuseProjectFolder(ws: Workspace): Promise<void> {
  const inner = new Workspace(path.join(ws.root, ".sdd"));
  if (await isFolder(inner.runtimeDir))
    throw new UserError(
      `${ws.shownRoot} is not a bernstein workspace, but its .sdd/ is: pass --sdd ${inner.shownRoot} (or set BERNSTEIN_SDD to it)`,
      ExitCode.USAGE,
    );
}

/**
 * Creates every workspace folder; safe to run again. Returns the folders it created. A project
 * folder whose `.sdd/` is a workspace is refused (exit 2), with nothing created.
 */
export async function initWorkspace(sddDir: string): Promise<{ workspace: Workspace; created: string[] }> {
  const ws = new Workspace(sddDir);
  // A fresh workspace where a restore was cut short between its renames would take the restored tree's place.
  await refuseMidRestore(ws.root);
  if (!(await isFolder(ws.runtimeDir))) await refuseProjectFolder(ws);
  const created: string[] = [];
  for (const rel of WORKSPACE_DIRS) {
    const dir = ws.p(rel);
    if (!(await isFolder(dir))) {
      await durableMkdir(dir);
      created.push(rel);
    }
  }
  return { workspace: ws, created };
}

/**
 * Refuses (exit 2) a workspace whose folders any user of the machine may write into: `start`
 * runs what the backlog holds as its own user, so a task file another local user dropped in
 * `backlog/open` (or a folder they swapped in above it) would run with these rights. The group's
 * write bit is left to the owner: under the user-private-group umask (002, many distributions'
 * default) every folder has it, and a group shared on purpose is a choice. A folder that is not
 * there is `init`'s business.
 */
export async function refuseOpenToOthers(ws: Workspace): Promise<void> {
  const rels = new Set<string>(["."]);
  for (const rel of WORKSPACE_DIRS) for (let r = rel; r !== "."; r = path.dirname(r)) rels.add(r);
  for (const rel of [...rels].sort()) {
    const dir = ws.p(rel);
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory() || (st.mode & 0o002) === 0) continue;
    throw new UserError(
      `${shellWord(shown(dir))} is writable by every user (mode ${(st.mode & 0o7777).toString(8)}): ` +
        `another user could put a task there for start to run; run: chmod o-w ${shellWord(shown(dir))}`,
      ExitCode.USAGE,
    );
  }
}

/** Opens an existing workspace or fails with a one-line hint to run `bernstein init`. */
export async function openWorkspace(sddDir: string): Promise<Workspace> {
  const ws = new Workspace(sddDir);
  await refuseMidRestore(ws.root);
  const st = await stat(ws.root).catch(() => undefined);
  if (!st || !st.isDirectory()) {
    throw new UserError(
      `no workspace at ${ws.shownRoot}; run \`bernstein init\` (or pass --sdd DIR / set BERNSTEIN_SDD)`,
      ExitCode.USAGE,
    );
  }
  if (!(await isFolder(ws.runtimeDir))) {
    await refuseProjectFolder(ws);
    throw new UserError(
      `${ws.shownRoot} is not a bernstein workspace (no runtime/); run \`bernstein init\``,
      ExitCode.USAGE,
    );
  }
  return ws;
}
