/**
 * Whether an attempt's wrapper process is still alive, as `start` (re-attach or re-queue) and
 * `status` both judge it.
 *
 * With its run-once token (`runtime/agents/<agent_id>.json`): same host, pid running, same kernel
 * start time (a reused pid is another process), not a zombie, and serving this workspace (a copy
 * of the workspace on the same host holds the original's tokens). Without one — the wrapper had not yet
 * created it, died before it, or the session comes from a history without tokens — the process
 * table decides: the wrapper is alive while a process runs `wrapper-main.js` with a job for this
 * workspace and agent id, and provably gone when none does (the session's spawn was committed
 * only after the process existed, so it cannot still be about to appear).
 */
import { readFileSync, statSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import os from "node:os";
import { processStartTime } from "../workspace/lock.js";
import { isProcessAlive, killProcessGroup } from "../workspace/process.js";
import { WRAPPER_MAIN, type AgentRecord, type WrapperJob } from "./wrapper.js";

/**
 * The wrapper of a token is alive and this workspace's: same host, pid running (not a zombie:
 * `isProcessAlive`), same kernel start time, serving the workspace at `sddRoot`.
 */
export function agentAlive(record: AgentRecord, sddRoot: string): boolean {
  if (record.hostname !== os.hostname()) return false;
  if (!isProcessAlive(record.pid)) return false;
  const now = processStartTime(record.pid);
  if (record.start_time && now !== record.start_time) return false;
  return servesWorkspace(record, sddRoot);
}

/**
 * Whether the token's wrapper works for the workspace at `sddRoot`, not for another copy of it:
 * the folder the token names (or, in a token of an earlier version, the job on the live wrapper's
 * command line) is this one. With neither to tell (no /proc), it is taken to be ours.
 */
function servesWorkspace(record: AgentRecord, sddRoot: string): boolean {
  const served = record.sdd ?? wrapperJobOf(String(record.pid))?.sdd;
  return served === undefined || sameFolder(served, sddRoot);
}

/** The same folder under either path (a symlink or a relative `--sdd` names it differently). */
function sameFolder(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** The job of a running wrapper from its command line (`node wrapper-main.js '<job>'`), if it is one. */
function wrapperJobOf(pid: string, cmdline?: string): Partial<WrapperJob> | undefined {
  try {
    const argv = (cmdline ?? readFileSync(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    const at = argv.indexOf(WRAPPER_MAIN);
    if (at < 0) return undefined;
    const job = JSON.parse(argv[at + 1] ?? "") as unknown;
    return job !== null && typeof job === "object" ? (job as Partial<WrapperJob>) : undefined;
  } catch {
    return undefined; // no /proc, gone, or not a job argument: not one we can tell
  }
}

/**
 * SIGKILL the command's process group and the wrapper's (only on the host that runs them, and
 * only for a token of this workspace: a copy's `stop --force` leaves the original's agents alone).
 * Returns the command's group id when it was still there to kill.
 */
export function killAgent(record: AgentRecord, sddRoot: string): number | null {
  if (record.hostname !== os.hostname()) return null;
  if (record.sdd !== undefined && !sameFolder(record.sdd, sddRoot)) return null;
  const wrapper = agentAlive(record, sddRoot) ? record.pid : null;
  // A token that names no workspace (an earlier version's, or a copy's) proves the command ours
  // only through its live wrapper's job: a copy beside the original never kills the original's.
  const ours = record.sdd !== undefined || wrapper !== null;
  const command = ours && commandGroupOurs(record) ? record.command_pgid : null;
  const killed = command !== null && killProcessGroup(command, "SIGKILL");
  if (wrapper) killProcessGroup(wrapper, "SIGKILL");
  return killed ? command : null;
}

/**
 * Whether the token's command group id still names the attempt's group. While any member of the
 * group lives the id cannot be given to a new process, so only a live process of that pid started
 * at another time (the whole group ended, the pid was reused) makes it someone else's; without
 * the leader's start time (a token of an earlier version), one started before the wrapper is.
 */
function commandGroupOurs(record: AgentRecord): boolean {
  const pgid = record.command_pgid;
  if (!pgid) return false;
  const now = processStartTime(pgid);
  if (now === null) return true; // the leader is gone (its group may live on), or no /proc to tell
  if (record.command_start_time) return now === record.command_start_time;
  return record.start_time === null || Number(now) >= Number(record.start_time);
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
    let cmdline: string;
    try {
      cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue; // exited while we looked: not running
    }
    const job = wrapperJobOf(pid, cmdline);
    if (job?.sdd === sddRoot && typeof job.agent_id === "string") ids.add(job.agent_id);
  }
  return ids;
}

/** One /proc scan, done on first use: for a pass over many sessions. */
export function wrapperScan(sddRoot: string): () => Promise<Set<string> | null> {
  let scan: Promise<Set<string> | null> | undefined;
  return () => (scan ??= runningWrapperAgentIds(sddRoot));
}
