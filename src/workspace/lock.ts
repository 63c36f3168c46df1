/**
 * Single-writer workspace lock at `runtime/bernstein.pid`: {pid, start_time, hostname, acquired_at}.
 * A lock whose process is gone (exited, or a zombie not yet reaped), or whose pid now belongs to
 * another process, is stale and is taken over with a warning; a live holder is refused, named.
 * `acquireLockFile`/`readLockFile` are the same lock at any path (the restore lock beside a
 * restore's target, which may not exist yet).
 */
import { readFileSync } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import os from "node:os";
import { ExitCode, UserError } from "../errors/errors.js";
import { atomicWriteFile, durableCreate, fsyncDir, removeDeadTemps } from "./durable.js";
import type { Workspace } from "./layout.js";
import { isProcessAlive } from "./process.js";
import path from "node:path";

export interface LockInfo {
  pid: number;
  start_time: string | null;
  hostname: string;
  acquired_at: string;
  command?: string;
}

/** Kernel start time of a process (clock ticks since boot), to tell a pid reuse from the holder. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may contain spaces; fields after the last ')' are space separated.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

export type LockState =
  | { state: "free" }
  | { state: "held"; info: LockInfo }
  | { state: "stale"; info: LockInfo; reason: string }
  | { state: "unreadable"; reason: string };

export function readLock(ws: Workspace): Promise<LockState> {
  return readLockFile(ws.lockFile);
}

export async function readLockFile(file: string): Promise<LockState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { state: "free" };
    return { state: "unreadable", reason: (err as Error).message };
  }
  let info: LockInfo;
  try {
    info = JSON.parse(text) as LockInfo;
    if (typeof info.pid !== "number") throw new Error("no pid");
  } catch {
    return { state: "unreadable", reason: "lock file is not valid JSON" };
  }
  return classify(info);
}

function classify(info: LockInfo): LockState {
  if (info.hostname !== os.hostname()) {
    // We cannot probe another host's processes; a restored workspace may carry a foreign lock,
    // but runtime/*.pid is excluded from backups, so a foreign lock here is a shared folder.
    return { state: "held", info };
  }
  if (!isProcessAlive(info.pid))
    return { state: "stale", info, reason: `process ${info.pid} is not running` };
  const now = processStartTime(info.pid);
  if (info.start_time && now && now !== info.start_time) {
    return { state: "stale", info, reason: `pid ${info.pid} now belongs to another process` };
  }
  return { state: "held", info };
}

export function describeHolder(info: LockInfo): string {
  return `pid ${info.pid} on ${info.hostname}${info.command ? ` (${info.command})` : ""}, since ${info.acquired_at}`;
}

/**
 * Waits until `holder` no longer holds `ws`'s lock (released, stale, or taken by another
 * process); false if it still does after `timeoutMs`. `poll` runs between looks (and may throw,
 * to give up early).
 */
export async function waitForLockRelease(
  ws: Workspace,
  holder: LockInfo,
  timeoutMs: number,
  poll?: () => void,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await readLock(ws);
    if (now.state !== "held" || now.info.pid !== holder.pid) return true;
    if (Date.now() >= deadline) return false;
    poll?.();
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface WorkspaceLock {
  info: LockInfo;
  /** A warning to show when a stale lock was taken over. */
  tookOver?: string;
  release(): Promise<void>;
}

/** Whether two lock records are the same taking of a lock (a pid alone may be reused). */
export function sameHolder(a: LockInfo, b: LockInfo): boolean {
  return a.pid === b.pid && a.hostname === b.hostname && a.acquired_at === b.acquired_at;
}

/** Takes the single-writer lock or throws a UserError (exit 3) naming the holder. */
export function acquireLock(ws: Workspace, command?: string): Promise<WorkspaceLock> {
  return acquireLockFile(ws.lockFile, {
    command,
    refuse: (holder) => lockedBy(ws, holder),
  });
}

/** The refusal (exit 3) of a command that needs the workspace `holder` holds. */
export function lockedBy(ws: Workspace, holder: LockInfo): UserError {
  return new UserError(
    `workspace ${ws.shownRoot} is locked by ${describeHolder(holder)}; stop it first (bernstein stop)`,
    ExitCode.LOCKED,
    { holder },
  );
}

/**
 * Takes the lock at `file` (its folder must exist) or throws `refuse(holder)` while a live
 * process holds it.
 */
export async function acquireLockFile(
  file: string,
  opts: { command?: string; refuse: (holder: LockInfo) => Error },
): Promise<WorkspaceLock> {
  const { command } = opts;
  const info: LockInfo = {
    pid: process.pid,
    start_time: processStartTime(process.pid),
    hostname: os.hostname(),
    acquired_at: new Date().toISOString(),
    command,
  };
  const body = JSON.stringify(info) + "\n";
  let tookOver: string | undefined;
  // A taker killed while replacing a stale lock left its temp file; the next taker removes it.
  await removeDeadTemps(path.dirname(file), (name) => name === path.basename(file));
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await durableCreate(file, body);
      return makeLock(file, info, tookOver);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const current = await readLockFile(file);
    if (current.state === "held") throw opts.refuse(current.info);
    if (current.state === "free") continue;
    tookOver =
      current.state === "stale"
        ? `took over stale lock of ${describeHolder(current.info)}: ${current.reason}`
        : `replaced unreadable lock file: ${current.reason}`;
    // Replace atomically, then confirm we are the holder (another taker may have raced us).
    await atomicWriteFile(file, body);
    const check = await readLockFile(file);
    if (check.state === "held" && sameHolder(check.info, info)) return makeLock(file, info, tookOver);
  }
  throw new UserError(`could not take the lock at ${file}`, ExitCode.LOCKED);
}

function makeLock(file: string, info: LockInfo, tookOver?: string): WorkspaceLock {
  let released = false;
  return {
    info,
    tookOver,
    async release() {
      if (released) return;
      released = true;
      const current = await readLockFile(file);
      if (current.state !== "free" && "info" in current && current.info.pid === info.pid) {
        await unlink(file).catch(() => {});
        await fsyncDir(path.dirname(file)).catch(() => {});
      }
    },
  };
}
