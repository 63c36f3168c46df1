/**
 * Talking to a running orchestrator through the workspace: the stop request it polls
 * (`runtime/signals/stop.json`, transient, left out of backups) and the status file it keeps
 * (`runtime/orchestrator.json`: pid, run id, state).
 */
import { readFile, unlink } from "node:fs/promises";
import os from "node:os";
import { ExitCode, UserError } from "../errors/errors.js";
import { atomicWriteFile, durableMkdir, fsyncDir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { describeHolder, sameHolder, waitForLockRelease, type LockInfo } from "../workspace/lock.js";
import { isProcessAlive } from "../workspace/process.js";
import { readClosedMarker } from "../wal/recovery.js";
import path from "node:path";

/** What an orchestrator's lock names as its command. */
export const ORCHESTRATOR_LOCK_COMMAND = "bernstein start";

/**
 * Whether the live holder of a workspace's lock is an orchestrator (it reads stop requests and
 * keeps the status file). A lock that names no command predates the field: an orchestrator's.
 */
export function isOrchestratorHolder(holder: LockInfo): boolean {
  return holder.command === undefined || holder.command === ORCHESTRATOR_LOCK_COMMAND;
}

/** What holds a workspace when it is not an orchestrator, for one line: the follower or the command. */
export function otherHolder(holder: { pid: number; hostname: string; command?: string | null }): string {
  const what = holder.command === "replicate follow" ? "a follower process" : "another command";
  return `${what} (${holder.command ? `${holder.command}, ` : ""}pid ${holder.pid} on ${holder.hostname})`;
}

export interface StopRequest {
  mode: "drain" | "force";
  /** Seconds to wait for running agents before leaving them running (drain) — they are re-attached later. */
  timeout_s: number;
  requested_at: string;
  requested_by_pid: number;
  /**
   * The lock of the orchestrator it is for, as the requester read it. Without it (the
   * orchestrator's own Ctrl-C) it is for whichever orchestrator reads it.
   */
  holder?: LockInfo;
}

/** Whether `req` is for the orchestrator holding `lock`. */
export function stopRequestIsFor(req: StopRequest, lock: LockInfo): boolean {
  return req.holder === undefined || sameHolder(req.holder, lock);
}

export function stopRequestPath(ws: Workspace): string {
  return path.join(ws.signalsDir, "stop.json");
}

export async function writeStopRequest(ws: Workspace, req: StopRequest): Promise<void> {
  const file = stopRequestPath(ws);
  await durableMkdir(path.dirname(file));
  await atomicWriteFile(file, JSON.stringify(req) + "\n");
}

export async function readStopRequest(ws: Workspace): Promise<StopRequest | null> {
  try {
    return JSON.parse(await readFile(stopRequestPath(ws), "utf8")) as StopRequest;
  } catch {
    return null;
  }
}

/**
 * At start: removes a request left over from an earlier orchestrator (it died before it read it),
 * and keeps one a `stop` wrote for this one (`lock`) while it was still recovering.
 */
export async function clearStaleStopRequest(ws: Workspace, lock: LockInfo): Promise<void> {
  const req = await readStopRequest(ws);
  if (req?.holder && sameHolder(req.holder, lock)) return;
  await clearStopRequest(ws);
}

export async function clearStopRequest(ws: Workspace): Promise<void> {
  const file = stopRequestPath(ws);
  try {
    await unlink(file);
    await fsyncDir(path.dirname(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/**
 * How an orchestrator asked to stop ended: `stopped` once it closed its run (checkpoint,
 * `orchestrator_stopped`, closed marker) and let go of the lock; `died` when the lock went with
 * the process before that (killed, crashed: the next start recovers the run); `waiting` while it
 * still holds the lock after `timeoutMs`. A clean stop says, from the status file it left, why
 * it ended (`forced`, `stopped` by a drain, `idle`) and how many agents it left running (a drain
 * leaves them to the next start): `null` when that file is no longer its own.
 */
export type StopOutcome =
  | { ended: "stopped"; run_id: string | null; how: StoppedHow | null }
  | { ended: "died"; run_id: string | null }
  | { ended: "waiting"; run_id: string | null };

export interface StoppedHow {
  reason: "idle" | "stopped" | "forced" | "interrupted";
  left_running: number;
}

/**
 * Waits for the orchestrator `holder` to end after a stop request. A lock that is no longer held
 * says only that the process is gone, which a kill -9 mid-drain does as well as a clean stop: the
 * run's closed marker (or the status file the orchestrator writes as its last step before the
 * release) tells the two apart. A request of this process that the orchestrator never completed
 * (it died, or it stopped for another reason before it read it) is withdrawn, so nothing is left
 * over for the next start to read.
 */
export async function awaitOrchestratorStop(
  ws: Workspace,
  holder: LockInfo,
  timeoutMs: number,
  poll?: () => void,
): Promise<StopOutcome> {
  const before = await readStatusFile(ws);
  const runId = before?.pid === holder.pid ? before.run_id : null;
  if (!(await waitForLockRelease(ws, holder, timeoutMs, poll))) return { ended: "waiting", run_id: runId };
  const req = await readStopRequest(ws);
  if (req?.requested_by_pid === process.pid) await clearStopRequest(ws);
  const after = await readStatusFile(ws);
  const own = after?.pid === holder.pid && after.state === "stopped" ? after : null;
  if (own || (runId !== null && (await readClosedMarker(ws, runId)) !== undefined)) {
    const how = own?.ended !== undefined ? { reason: own.ended, left_running: own.left_running ?? 0 } : null;
    return { ended: "stopped", run_id: runId ?? after?.run_id ?? null, how };
  }
  return { ended: "died", run_id: runId };
}

/** How long `stopLockHolder` waits for the holder to let go of the workspace. */
export const STOP_HOLDER_TIMEOUT_MS = 60_000;

/**
 * Stops the live process holding `ws`'s lock and waits until it has let go (`dr restore
 * --force`): an orchestrator through a stop request in force mode, as `bernstein stop --force`
 * (its agents are killed and their tasks re-queued, so none of them writes into what replaces
 * the workspace), any other bernstein command of this host by SIGTERM (each cleans up and
 * exits). Throws (exit 3) if the holder runs on another host and is not an orchestrator, or if
 * it still holds the lock after `STOP_HOLDER_TIMEOUT_MS`. Returns what was done, for a warning.
 */
export async function stopLockHolder(ws: Workspace, holder: LockInfo, poll?: () => void): Promise<string> {
  const who = describeHolder(holder);
  if (holder.command === ORCHESTRATOR_LOCK_COMMAND) {
    await writeStopRequest(ws, {
      mode: "force",
      timeout_s: 0,
      requested_at: new Date().toISOString(),
      requested_by_pid: process.pid,
      holder,
    });
  } else if (holder.hostname === os.hostname()) {
    try {
      process.kill(holder.pid, "SIGTERM");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  } else {
    throw new UserError(
      `${ws.shownRoot} is in use by ${who}, which runs on another host; stop it there first`,
      ExitCode.LOCKED,
      { holder },
    );
  }
  const deadline = Date.now() + STOP_HOLDER_TIMEOUT_MS;
  let stopped = await waitForLockRelease(ws, holder, STOP_HOLDER_TIMEOUT_MS, poll);
  // A process of this host is stopped once it has exited, not when its lock goes: it may still
  // write (its last lines, its status) between the two.
  while (stopped && holder.hostname === os.hostname() && isProcessAlive(holder.pid)) {
    if (Date.now() >= deadline) stopped = false;
    else {
      poll?.();
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  if (!stopped)
    throw new UserError(
      `${ws.shownRoot} is still in use by ${who} ${STOP_HOLDER_TIMEOUT_MS / 1000} s after it was asked to stop`,
      ExitCode.LOCKED,
      { holder },
    );
  return `stopped ${who}, which held ${ws.shownRoot} (--force)`;
}

export interface OrchestratorStatusFile {
  pid: number;
  run_id: string;
  state: "recovering" | "running" | "draining" | "stopped";
  started_at: string;
  updated_at: string;
  max_agents: number;
  replay?: unknown;
  exit_code?: number;
  /** Once stopped: why the run ended. */
  ended?: StoppedHow["reason"];
  /** Once stopped: its agents still running then (a drain's timeout), re-attached by the next start. */
  left_running?: number;
}

export function statusFilePath(ws: Workspace): string {
  return path.join(ws.runtimeDir, "orchestrator.json");
}

export async function writeStatusFile(ws: Workspace, s: OrchestratorStatusFile): Promise<void> {
  await atomicWriteFile(statusFilePath(ws), JSON.stringify(s) + "\n");
}

export async function readStatusFile(ws: Workspace): Promise<OrchestratorStatusFile | null> {
  try {
    return JSON.parse(await readFile(statusFilePath(ws), "utf8")) as OrchestratorStatusFile;
  } catch {
    return null;
  }
}

/** The running orchestrator's own status file: written whole on every change of its state. */
export class RunStatusFile {
  private current: OrchestratorStatusFile;

  constructor(
    private readonly ws: Workspace,
    first: Omit<OrchestratorStatusFile, "started_at" | "updated_at">,
  ) {
    const now = new Date().toISOString();
    this.current = { ...first, started_at: now, updated_at: now };
  }

  async write(change: Partial<OrchestratorStatusFile> = {}): Promise<void> {
    this.current = { ...this.current, ...change, updated_at: new Date().toISOString() };
    await writeStatusFile(this.ws, this.current);
  }
}
