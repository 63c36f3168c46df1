/**
 * Talking to a running orchestrator through the workspace: the stop request it polls
 * (`runtime/signals/stop.json`, transient, left out of backups) and the status file it keeps
 * (`runtime/orchestrator.json`: pid, run id, state).
 */
import { readFile, unlink } from "node:fs/promises";
import { atomicWriteFile, durableMkdir, fsyncDir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import path from "node:path";

export interface StopRequest {
  mode: "drain" | "force";
  /** Seconds to wait for running agents before leaving them running (drain) — they are re-attached later. */
  timeout_s: number;
  requested_at: string;
  requested_by_pid: number;
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

export async function clearStopRequest(ws: Workspace): Promise<void> {
  const file = stopRequestPath(ws);
  try {
    await unlink(file);
    await fsyncDir(path.dirname(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
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
