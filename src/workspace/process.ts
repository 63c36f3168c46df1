import { readFileSync, realpathSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * Whether a process runs (EPERM: it does, and belongs to another user). A zombie — exited, not
 * yet reaped by its parent, e.g. an orchestrator SIGKILLed under a parent that never waits — does
 * not: `kill(pid, 0)` still finds it, but it holds nothing and does nothing any more.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return !isZombie(pid);
}

/** Its state in /proc is Z (false where there is no /proc to tell). */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may hold spaces and parentheses; the state follows the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** Signals a whole process group; one that is gone already is not an error. Whether it was there. */
export function killProcessGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // already gone
  }
}

/**
 * Where a record of a running process (an archiver's status, a replication endpoint) was
 * written: its host and workspace folder (real path). A copy of the record in another folder or
 * on another host (an older backup restored, a workspace copied whole) describes another
 * workspace's process.
 */
export interface ProcessHome {
  host?: string;
  sdd?: string;
}

/** `p` with its links resolved (as given, made absolute, when it cannot be resolved). */
function realPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** The home of a process of the workspace at `root`, to write into its record. */
export function processHome(root: string): Required<ProcessHome> {
  return { host: os.hostname(), sdd: realPath(root) };
}

/** Whether a record belongs to the workspace at `root` (one written before homes were kept is taken to). */
export function isHome(rec: ProcessHome, root: string): boolean {
  return rec.sdd === undefined || (rec.sdd === realPath(root) && rec.host === os.hostname());
}
