/**
 * The agent wrapper: a small process the orchestrator spawns detached (its own process group)
 * for each attempt of a task. It outlives the orchestrator, so a crashed orchestrator loses no
 * result:
 *
 * 1. it creates `runtime/agents/<agent_id>.json` EXCLUSIVELY (O_EXCL) with its pid and kernel start
 *    time. That file is the run-once token: a second wrapper for the same agent id (the orchestrator
 *    re-spawning after a crash between spawn and commit) finds it and exits without running anything;
 * 2. it runs the command in a process group of its own, output appended to `logs/agents/<agent_id>.log`,
 *    and kills that group when the task's timeout expires;
 * 3. when the command exits it writes `runtime/completed/<agent_id>.json` atomically: exit status,
 *    duration, and cost/tokens from a final JSON line with `cost_usd` if the agent printed one.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { open, readdir, stat, type FileHandle } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FILE_MODE, atomicWriteFile, durableCreate, durableMkdir } from "../workspace/durable.js";
import { Workspace } from "../workspace/layout.js";
import { readSmallFile } from "../workspace/small-files.js";
import { processStartTime } from "../workspace/lock.js";
import { killProcessGroup } from "../workspace/process.js";
import { setLongTimeout, type Timer } from "../workspace/timer.js";

/** The wrapper's entry script: the orchestrator spawns `node WRAPPER_MAIN '<WrapperJob JSON>'`. */
export const WRAPPER_MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "wrapper-main.js");

/** Exit code of a wrapper that found its run-once token taken: it ran nothing. */
export const EXIT_DUPLICATE = 75;
/** How long the command gets between SIGTERM and SIGKILL when its timeout expires. */
export const KILL_GRACE_MS = 2000;

export interface WrapperJob {
  sdd: string;
  agent_id: string;
  task_id: string;
  attempt: number;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  timeout_s: number;
}

/** `runtime/agents/<agent_id>.json`: who runs the attempt (the run-once token). */
export interface AgentRecord {
  /**
   * The workspace the wrapper serves (its job's `sdd`): a copy of the workspace (a restore beside
   * the original) holds this record too, and must not take the original's agent for its own.
   * Absent in records of earlier versions.
   */
  sdd?: string;
  agent_id: string;
  task_id: string;
  attempt: number;
  pid: number;
  start_time: string | null;
  hostname: string;
  started_at: string;
  /** Process group of the command (its pid), once spawned. */
  command_pgid: number | null;
  /**
   * Kernel start time of the command's group leader: once the group is gone its id may be reused,
   * and a kill must not reach the new group. Absent in records of earlier versions.
   */
  command_start_time?: string | null;
}

/** `runtime/completed/<agent_id>.json`: how the attempt ended. */
export interface CompletionRecord {
  agent_id: string;
  task_id: string;
  attempt: number;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  /** Set when the command could not be started at all (e.g. its binary is missing). */
  error: string | null;
  duration_s: number;
  started_at: string;
  finished_at: string;
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  model: string | null;
}

/** File-name form of an agent id (`T-1#2` → `T-1#2`; only `/` would be a problem and ids exclude it). */
export function agentRecordPath(ws: Workspace, agentId: string): string {
  return path.join(ws.agentRecordsDir, `${agentId}.json`);
}
export function completionPath(ws: Workspace, agentId: string): string {
  return path.join(ws.completedDir, `${agentId}.json`);
}
export function agentLogPath(ws: Workspace, agentId: string): string {
  return path.join(ws.agentLogsDir, `${agentId}.log`);
}
export function agentIdOf(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}

/** A record that is not there: its file is missing, or (never with atomic writes) not JSON. */
function missingRecord(err: unknown): null {
  if ((err as NodeJS.ErrnoException).code === "ENOENT" || err instanceof SyntaxError) return null;
  throw err;
}

async function readJsonFile<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readSmallFile(file, "utf8")) as T;
  } catch (err) {
    return missingRecord(err);
  }
}

/** Whether an attempt's run-once token exists (its wrapper started, so a process may have run). */
export function hasRunOnceToken(ws: Workspace, agentId: string): Promise<boolean> {
  return stat(agentRecordPath(ws, agentId)).then(
    () => true,
    () => false,
  );
}

export function readAgentRecord(ws: Workspace, agentId: string): Promise<AgentRecord | null> {
  return readJsonFile<AgentRecord>(agentRecordPath(ws, agentId));
}
/** readAgentRecord with a blocking read, for many records read in turns (small-files.ts). */
export function readAgentRecordSync(ws: Workspace, agentId: string): AgentRecord | null {
  try {
    return JSON.parse(readFileSync(agentRecordPath(ws, agentId), "utf8")) as AgentRecord;
  } catch (err) {
    return missingRecord(err);
  }
}
export function readCompletion(ws: Workspace, agentId: string): Promise<CompletionRecord | null> {
  return readJsonFile<CompletionRecord>(completionPath(ws, agentId));
}

/** Agent ids that have a completion record waiting (temp files of atomic writes skipped). */
export async function listCompletions(ws: Workspace): Promise<string[]> {
  try {
    return (await readdir(ws.completedDir))
      .filter((n) => !n.startsWith(".") && n.endsWith(".json"))
      .map((n) => n.slice(0, -".json".length))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

export interface Usage {
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  model: string | null;
}

const NO_USAGE: Usage = { cost_usd: 0, input_tokens: 0, output_tokens: 0, model: null };

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Usage from the agent's final output line, when it is a JSON object with `cost_usd` (or Claude's
 * `total_cost_usd`); tokens from `input_tokens`/`output_tokens` at top level or under `usage`.
 */
export function parseUsageLine(line: string): Usage | null {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    return null;
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return null;
  const o = obj as Record<string, unknown>;
  const cost = num(o.cost_usd) ?? num(o.total_cost_usd);
  if (cost === undefined) return null;
  const usage = (o.usage && typeof o.usage === "object" ? o.usage : {}) as Record<string, unknown>;
  return {
    cost_usd: cost,
    input_tokens: Math.trunc(num(o.input_tokens) ?? num(usage.input_tokens) ?? 0),
    output_tokens: Math.trunc(num(o.output_tokens) ?? num(usage.output_tokens) ?? 0),
    model: typeof o.model === "string" ? o.model : null,
  };
}

/**
 * Reads only the end of the log (an agent may print megabytes) and parses its last non-empty line.
 * It reads through the handle the agent wrote to, not the log's path: the workspace may be restored
 * (its folder replaced) while the agent runs, and the path then names another file.
 */
export async function usageFromLog(log: FileHandle, tailBytes = 64 * 1024): Promise<Usage> {
  const { size } = await log.stat();
  const len = Math.min(size, tailBytes);
  const buf = Buffer.alloc(len);
  await log.read(buf, 0, len, size - len);
  const lines = buf.toString("utf8").split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i].trim();
    if (line) return parseUsageLine(line) ?? NO_USAGE;
  }
  return NO_USAGE;
}

interface CommandOutcome {
  code: number | null;
  signal: string | null;
  error: string | null;
  timedOut: boolean;
}

/** Runs one attempt; resolves with the wrapper's exit code once the completion record is durable. */
export async function runWrapper(job: WrapperJob): Promise<number> {
  const ws = new Workspace(job.sdd);
  const startedAt = new Date();
  const record: AgentRecord = {
    sdd: job.sdd,
    agent_id: job.agent_id,
    task_id: job.task_id,
    attempt: job.attempt,
    pid: process.pid,
    start_time: processStartTime(process.pid),
    hostname: os.hostname(),
    started_at: startedAt.toISOString(),
    command_pgid: null,
  };
  const recordFile = agentRecordPath(ws, job.agent_id);
  await durableMkdir(path.dirname(recordFile));
  try {
    await durableCreate(recordFile, JSON.stringify(record) + "\n");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return EXIT_DUPLICATE;
    throw err;
  }
  const logFile = agentLogPath(ws, job.agent_id);
  await durableMkdir(path.dirname(logFile));
  await durableMkdir(ws.completedDir);
  // Opened for reading too: the usage is read back through this handle (usageFromLog).
  const log = await open(logFile, "a+", FILE_MODE);
  let outcome: CommandOutcome;
  let usage: Usage;
  let durationS: number;
  try {
    const t0 = process.hrtime.bigint();
    // The token and the completion below are written by path on purpose: they belong to the
    // workspace that folder holds when they are written. After a restore into the same folder that
    // is the restored one, which holds this attempt's token and re-attaches to it; the output
    // stays in the file the agent was started with.
    const run = await runCommand(job, log.fd, (pgid) => {
      record.command_pgid = pgid;
      record.command_start_time = pgid ? processStartTime(pgid) : null;
      return atomicWriteFile(recordFile, JSON.stringify(record) + "\n");
    });
    outcome = run.outcome;
    durationS = Number(process.hrtime.bigint() - t0) / 1e9;
    await run.recordUpdate;
    usage = await usageFromLog(log);
  } finally {
    await log.close();
  }
  const completion: CompletionRecord = {
    agent_id: job.agent_id,
    task_id: job.task_id,
    attempt: job.attempt,
    exit_code: outcome.code,
    signal: outcome.signal,
    timed_out: outcome.timedOut,
    error: outcome.error,
    duration_s: Math.round(durationS * 1000) / 1000,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    ...usage,
  };
  await atomicWriteFile(completionPath(ws, job.agent_id), JSON.stringify(completion) + "\n");
  return 0;
}

/**
 * Runs the job's command in a process group of its own, output to `logFd`, killed at its timeout;
 * SIGTERM/SIGINT of the wrapper are passed on to the group. `recordGroup` rewrites the run-once
 * token with the group id; its promise is returned beside the outcome, so the completion can wait
 * for it and a finished attempt never leaves a record without the group to clean up.
 */
async function runCommand(
  job: WrapperJob,
  logFd: number,
  recordGroup: (pgid: number | null) => Promise<void>,
): Promise<{ outcome: CommandOutcome; recordUpdate: Promise<void> }> {
  let recordUpdate: Promise<void> = Promise.resolve();
  const outcome = await new Promise<CommandOutcome>((resolve) => {
    let timedOut = false;
    let settled = false;
    const child = spawn(job.argv[0], job.argv.slice(1), {
      cwd: job.cwd,
      env: { ...process.env, ...job.env, BERNSTEIN_TASK_ID: job.task_id, BERNSTEIN_AGENT_ID: job.agent_id },
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    const timers: Timer[] = [];
    const forward = (sig: NodeJS.Signals) => {
      if (child.pid) killProcessGroup(child.pid, sig);
    };
    const onTerm = () => forward("SIGTERM");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onTerm);
    const finish = (v: Omit<CommandOutcome, "timedOut">) => {
      if (settled) return;
      settled = true;
      timers.forEach((t) => t.clear());
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onTerm);
      resolve({ ...v, timedOut });
    };
    child.on("error", (err: NodeJS.ErrnoException) => {
      const reason =
        err.code === "ENOENT"
          ? `agent binary not found: ${job.argv[0]}`
          : `could not start ${job.argv[0]}: ${err.message}`;
      finish({ code: null, signal: null, error: reason });
    });
    child.on("spawn", () => {
      // A failed rewrite only costs the orchestrator the group id (it then signals the wrapper's own
      // group); the attempt's result matters more, so the command runs and is recorded either way.
      recordUpdate = recordGroup(child.pid ?? null).catch(() => {});
      if (job.timeout_s > 0) {
        timers.push(
          setLongTimeout(() => {
            timedOut = true;
            forward("SIGTERM");
            timers.push(setLongTimeout(() => forward("SIGKILL"), KILL_GRACE_MS));
          }, job.timeout_s * 1000),
        );
      }
    });
    child.on("exit", (code, signal) => finish({ code, signal, error: null }));
  });
  return { outcome, recordUpdate };
}
