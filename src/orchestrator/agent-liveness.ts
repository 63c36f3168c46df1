/**
 * Whether an attempt's wrapper process is still alive, as `start` (re-attach or re-queue) and
 * `status` both judge it.
 *
 * With its run-once token (`runtime/agents/<agent_id>.json`): same host, pid running, same kernel
 * start time (a reused pid is another process), not a zombie. Without one — the wrapper had not yet
 * created it, died before it, or the session comes from a history without tokens — the process
 * table decides: the wrapper is alive while a process runs `wrapper-main.js` with a job for this
 * workspace and agent id, and provably gone when none does (the session's spawn was committed
 * only after the process existed, so it cannot still be about to appear).
 */
import { readFile, readdir } from "node:fs/promises";
import os from "node:os";
import { processStartTime } from "../workspace/lock.js";
import { isProcessAlive, killProcessGroup } from "../workspace/process.js";
import { WRAPPER_MAIN, type AgentRecord, type WrapperJob } from "./wrapper.js";

/**
 * The wrapper of a token is alive: same host, pid running (not a zombie: `isProcessAlive`), same
 * kernel start time.
 */
export function agentAlive(record: AgentRecord): boolean {
  if (record.hostname !== os.hostname()) return false;
  if (!isProcessAlive(record.pid)) return false;
  const now = processStartTime(record.pid);
  return !record.start_time || now === record.start_time;
}

/** SIGKILL the command's process group and the wrapper's (only on the host that runs them). */
export function killAgent(record: AgentRecord): void {
  if (record.hostname !== os.hostname()) return;
  for (const pgid of [record.command_pgid, agentAlive(record) ? record.pid : null]) {
    if (pgid) killProcessGroup(pgid, "SIGKILL");
  }
}

/**
 * Agent ids of the wrapper processes of workspace `sddRoot` running on this host, read from
 * /proc (`node wrapper-main.js '<job>'`); null where there is no /proc to tell.
 */
export async function runningWrapperAgentIds(sddRoot: string): Promise<Set<string> | null> {
  let pids: string[];
  try {
    pids = (await readdir("/proc")).filter((n) => /^\d+$/.test(n));
  } catch {
    return null;
  }
  const ids = new Set<string>();
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    } catch {
      continue; // exited while we looked: not running
    }
    const at = argv.indexOf(WRAPPER_MAIN);
    if (at < 0) continue;
    try {
      const job = JSON.parse(argv[at + 1] ?? "") as Partial<WrapperJob>;
      if (job.sdd === sddRoot && typeof job.agent_id === "string") ids.add(job.agent_id);
    } catch {
      // not a job argument: not one of ours
    }
  }
  return ids;
}

/** One /proc scan, done on first use: for a pass over many sessions. */
export function wrapperScan(sddRoot: string): () => Promise<Set<string> | null> {
  let scan: Promise<Set<string> | null> | undefined;
  return () => (scan ??= runningWrapperAgentIds(sddRoot));
}
