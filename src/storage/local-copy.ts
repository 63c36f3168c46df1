/**
 * The complete local copy of a remote backup (offsite.ts writes it, then uploads from it) and the
 * marker `<copy>.pid` beside it while its backup runs: the workspace lock's format and rules
 * (workspace/lock.ts: pid, start time, host). A backup that ends removes its marker, whether it
 * removes the copy (uploaded) or keeps it on purpose (`--keep-local`, a failed upload that names
 * it). A marker whose holder is dead was left by a backup that never ended (SIGKILL, power loss):
 * its copy is a full backup nobody will remove or upload, so the next remote backup into the
 * folder removes it and says so, and `dr status` names it meanwhile. A copy without a marker is
 * never touched: it was kept on purpose, or written before markers existed.
 */
import { readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { fsyncDir } from "../workspace/durable.js";
import {
  acquireLockFile,
  describeHolder,
  readLockFile,
  type LockInfo,
  type WorkspaceLock,
} from "../workspace/lock.js";
import { shown } from "../workspace/shown-path.js";

const MARKER_SUFFIX = ".pid";

/** Default folder for local copies of remote backups: $BERNSTEIN_BACKUP_LOCAL_DIR or XDG state. */
export function localCopyDir(): string {
  if (process.env.BERNSTEIN_BACKUP_LOCAL_DIR) return path.resolve(process.env.BERNSTEIN_BACKUP_LOCAL_DIR);
  const state = process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
  return path.join(state, "bernstein", "backups");
}

/** A local copy whose backup's process is gone. */
export interface LeftoverCopy {
  /** The copy's absolute path. */
  path: string;
  /** Who wrote it, as its marker says. */
  holder: LockInfo;
  /** Why the holder counts as gone (`process N is not running`). */
  reason: string;
}

/**
 * Marks `copy` as its backup's until `release()`; taken before the copy is written, so that a
 * copy is never without its marker while its backup runs. Another live backup writing the same
 * copy (the same `--to` key at the same time) is refused, exit 3: each would remove or replace
 * the other's.
 */
export function holdLocalCopy(copy: string): Promise<WorkspaceLock> {
  return acquireLockFile(copy + MARKER_SUFFIX, {
    command: "dr backup",
    refuse: (holder) =>
      new UserError(
        `the local copy ${shown(copy)} is being written by another backup (${describeHolder(holder)}); run this one when it has ended`,
        ExitCode.LOCKED,
        { holder },
      ),
  });
}

/** The markers in `dir` whose holder is gone, with the copy each marks. */
async function staleMarkers(
  dir: string,
): Promise<{ marker: string; copy: string; holder: LockInfo; reason: string }[]> {
  const found = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith(MARKER_SUFFIX)) continue;
    const marker = path.join(dir, name);
    const state = await readLockFile(marker);
    if (state.state === "stale")
      found.push({
        marker,
        copy: marker.slice(0, -MARKER_SUFFIX.length),
        holder: state.info,
        reason: state.reason,
      });
  }
  return found;
}

/** The copies in `dir` whose marker names a process that is gone (only this host's can be told). */
export async function leftoverLocalCopies(dir: string): Promise<LeftoverCopy[]> {
  const present = new Set(await readdir(dir).catch(() => [] as string[]));
  return (await staleMarkers(dir))
    .filter((m) => present.has(path.basename(m.copy)))
    .map((m) => ({ path: m.copy, holder: m.holder, reason: m.reason }));
}

/**
 * Removes the leftover copies in `dir` (and the markers of backups killed before their copy was
 * complete); returns the copies removed. Each is taken over as a stale lock first, so a backup
 * that starts on the same name meanwhile keeps its copy: one of the two is refused the marker.
 */
export async function removeLeftoverLocalCopies(dir: string): Promise<LeftoverCopy[]> {
  const removed: LeftoverCopy[] = [];
  for (const { marker, copy, holder, reason } of await staleMarkers(dir)) {
    let lock: WorkspaceLock;
    try {
      lock = await acquireLockFile(marker, { refuse: () => new Error("held") });
    } catch {
      continue; // taken by a live backup since it was read
    }
    // Free by now: its backup ended, or another backup removed it; the copy is not ours to judge.
    if (!lock.tookOver) {
      await lock.release();
      continue;
    }
    const existed = await rm(copy).then(
      () => true,
      (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? false : undefined),
    );
    // A copy that could not be removed keeps the marker, now this process's: stale again once it
    // exits, so the next backup tries again and `dr status` goes on naming it.
    if (existed === undefined) continue;
    await fsyncDir(dir).catch(() => {});
    await lock.release();
    if (existed) removed.push({ path: copy, holder, reason });
  }
  return removed;
}

/** One line for a leftover copy: whose it was and what becomes of it. */
export function describeLeftover(copy: LeftoverCopy, done: "removed" | "found"): string {
  const whose = `a remote backup that never ended (${describeHolder(copy.holder)}: ${copy.reason})`;
  return done === "removed"
    ? `removed the local copy ${shown(copy.path)} left by ${whose}`
    : `the local copy ${shown(copy.path)} was left by ${whose}; the next remote backup into its folder removes it`;
}
