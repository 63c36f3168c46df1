/**
 * The target side of a restore: its lock, its staging folders and the journaled swap.
 *
 * Crash safety: before the two renames a journal (`.<name>.restore-journal.json` beside the
 * target) names the staging folder and the kept name. A crash after it leaves the target
 * mid-swap (missing between the renames); every command that opens the workspace refuses it
 * (workspace/restore-journal.ts), and `completeInterruptedRestore` (run by `dr restore --finish`
 * and by every later `dr restore`) rolls forward to the complete new state. Before the journal
 * exists, the old target is untouched and a leftover staging folder of a dead process is removed.
 *
 * Concurrency: every restore first takes the restore lock `.<name>.restore.lock` beside the target
 * (the workspace lock's format and stale-lock takeover). It lives beside the target because the
 * target may not exist yet, and it is a hidden file, never a folder, so that nothing takes it for
 * a workspace. A second restore of the same target is refused with exit 3 before it writes
 * anything; the journal roll-forward and the removal of dead staging folders run under it too.
 */
import { randomBytes } from "node:crypto";
import { lstat, readdir, readlink, realpath, rm, stat } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError, destinationError, ioError } from "../errors/errors.js";
import {
  atomicWriteFile,
  durableMkdir,
  durableRename,
  durableUnlink,
  removeDeadTemps,
  removeEmptyFolders,
} from "../workspace/durable.js";
import { crashPoint } from "../state/decisions.js";
import { cleanupOnInterrupt, interruptInProgress } from "../workspace/interrupt.js";
import { WORKSPACE_MARKER_DIRS, Workspace, isWorkspaceDir } from "../workspace/layout.js";
import {
  acquireLock,
  acquireLockFile,
  describeHolder,
  readLock,
  type LockInfo,
  type WorkspaceLock,
} from "../workspace/lock.js";
import { isProcessAlive } from "../workspace/process.js";
import { readRestoreJournal, restoreJournalPath, type RestoreJournal } from "../workspace/restore-journal.js";
import { shown } from "../workspace/shown-path.js";

const utcStamp = (d = new Date()): string =>
  d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
const stagingPrefix = (target: string): string => `.${path.basename(target)}.restore-`;
/** The restore lock of `target` (not a staging name: those start with `stagingPrefix`). */
export const restoreLockPath = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.restore.lock`);

/** Takes the restore lock of `target` (its folder must exist), or exit 3 naming the restore holding it. */
export async function acquireRestoreLock(target: string): Promise<WorkspaceLock> {
  try {
    return await acquireLockFile(restoreLockPath(target), {
      command: "dr restore",
      refuse: (holder) =>
        new UserError(
          `${target} is being restored by ${describeHolder(holder)}; wait for it to finish, then restore again if you still need to`,
          ExitCode.LOCKED,
          { holder },
        ),
    });
  } catch (err) {
    throw ioError(`cannot restore into ${target}`, err) ?? err;
  }
}

export const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Finishes or undoes a restore that was interrupted (SIGKILL, power loss). Returns what it did.
 * Safe to call any time (it takes the restore lock: exit 3 while a restore runs); a no-op when
 * there is no journal.
 */
export async function completeInterruptedRestore(
  target: string,
): Promise<{ action?: string; removedStaging: string[] }> {
  const { abs } = await restoreTargetOf(target);
  if (!(await exists(path.dirname(abs)))) return { removedStaging: [] };
  const lock = await acquireRestoreLock(abs);
  try {
    const action = await finishInterruptedRestore(abs);
    // After the swap: a journaled staging folder is the restored tree until it is in place.
    return { action, removedStaging: await removeStaleStaging(abs) };
  } finally {
    await lock.release();
  }
}

/**
 * completeInterruptedRestore, for a caller that holds the restore lock. A journal is written once
 * the staging tree is complete, just before the swap's renames: from then on the restore
 * completes. With the staging tree still there, whatever stands at the target is moved aside
 * (never removed): the old tree when the first rename had not happened yet (it goes to the kept
 * name, as the swap would have put it), or a folder made there since (an `init` run between the
 * renames: to a kept name of its own).
 */
export async function finishInterruptedRestore(abs: string): Promise<string | undefined> {
  const jp = restoreJournalPath(abs);
  const j = await readRestoreJournal(abs);
  if (j === undefined) return undefined;
  if (j === null)
    throw new UserError(
      `cannot finish the interrupted restore of ${shown(abs)}: its journal ${shown(jp)} cannot be read; the restored tree is the newest ${shown(stagingPrefix(abs))}* folder beside it, and the previous one ${shown(abs)}.pre-restore-*: move them into place by hand, then remove the journal`,
      ExitCode.CORRUPT,
    );
  let action: string;
  if (await exists(j.staging)) {
    let movedAside: string | undefined;
    if (await exists(abs)) {
      const oldTreeStillThere = j.kept !== null && !(await exists(j.kept));
      movedAside = oldTreeStillThere ? j.kept! : await keptNameFor(abs);
      await durableRename(abs, movedAside);
    }
    await durableRename(j.staging, abs);
    action = "rolled forward an interrupted restore";
    if (movedAside && movedAside !== j.kept)
      action += ` (what was made at its target since is kept as ${shown(movedAside)})`;
  } else {
    action = "finished an interrupted restore";
  }
  if (j.remove_kept && j.kept) await rm(j.kept, { recursive: true, force: true });
  await durableUnlink(jp).catch(() => {});
  return action;
}

/**
 * Removes staging folders left by restores whose process died before the swap, and the temp
 * file of a journal being written when one died. Whatever starts with the staging prefix and
 * names a dead pid goes: also what older versions nested beside a staging folder (the
 * point-in-time restore's snapshot restored as a restore of its own, with its own staging
 * folder `.<name>.restore-<pid>-<hex>.restore-<pid>-<hex>` and lock).
 */
export async function removeStaleStaging(target: string): Promise<string[]> {
  const removed: string[] = [];
  const dir = path.dirname(target);
  const names = await readdir(dir).catch(() => [] as string[]);
  const journal = path.basename(restoreJournalPath(target));
  const prefix = stagingPrefix(target);
  // Also the temp file of a lock beside a staging folder (restores before the point-in-time
  // restore extracted its snapshot straight into its staging folder made one there).
  await removeDeadTemps(dir, (name) => name === journal || name.startsWith(prefix), names);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isProcessAlive(pid)) {
      await rm(path.join(dir, name), { recursive: true, force: true });
      removed.push(path.join(dir, name));
    }
  }
  return removed;
}

/** The target's workspace lock for the restore, or the live process that holds it. */
type TargetLock = { lock?: WorkspaceLock; liveHolder?: LockInfo };

/**
 * Refuses early while a live process owns the target (exit 3) unless it may be stopped (`dr
 * restore --force`: it is stopped later, once the staging folder is built); a target with a
 * runtime folder and no live holder is locked for the restore's duration.
 */
async function lockLiveTarget(abs: string, mayStop: boolean, warnings: string[]): Promise<TargetLock> {
  const ws = new Workspace(abs);
  const state = await readLock(ws);
  if (state.state === "held") {
    if (!mayStop) {
      throw new UserError(
        `${abs} is in use by ${describeHolder(state.info)}; stop it first, or pass --force to have it stopped`,
        ExitCode.LOCKED,
        { holder: state.info },
      );
    }
    return { liveHolder: state.info };
  }
  if (!(await exists(ws.runtimeDir))) return {};
  const lock = await acquireLock(ws, "dr restore");
  if (lock.tookOver) warnings.push(lock.tookOver);
  return { lock };
}

/**
 * The folder a restore of `target` replaces, and the symbolic link that named it, if one did. A
 * link (an `.sdd` linked to a data volume) is followed: swapping the link itself for a folder
 * put the restored workspace on the link's file system instead of the volume. A link to a
 * missing folder is followed only when the folder that would hold it exists; else the volume
 * may be unmounted, and the folders a restore makes would land on the wrong disk: exit 6.
 */
export async function restoreTargetOf(target: string): Promise<{ abs: string; link?: string }> {
  const abs = path.resolve(target);
  const st = await lstat(abs).catch(() => undefined);
  if (!st?.isSymbolicLink()) return { abs };
  try {
    return { abs: await realpath(abs), link: abs };
  } catch (err) {
    const named = path.resolve(path.dirname(abs), await readlink(abs).catch(() => "."));
    const holder = await realpath(path.dirname(named)).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && holder && (await stat(holder)).isDirectory())
      return { abs: path.join(holder, path.basename(named)), link: abs };
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new UserError(
        `cannot restore into ${shown(abs)}: it is a symbolic link to ${named}, whose folder ${path.dirname(named)} does not exist (is its volume mounted?); restoring would create it on the wrong disk`,
        ExitCode.IO,
      );
    throw destinationError(`cannot restore into ${shown(abs)}: cannot follow the symbolic link`, err) ?? err;
  }
}

/**
 * Whether the target exists, after refusing one a restore must not replace (exit 6): a restore
 * moves the existing target aside (and --no-keep deletes it), so only an empty folder or a
 * workspace (named `.sdd`, or isWorkspaceDir) may be there. A project folder, a file or anything else is left
 * as it is.
 */
export async function checkReplaceableTarget(abs: string): Promise<boolean> {
  let st;
  try {
    st = await lstat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw destinationError(`cannot restore into ${shown(abs)}`, err) ?? err;
  }
  const refuse = (why: string): UserError =>
    new UserError(
      `cannot restore into ${shown(abs)}: ${why}, and a restore replaces its target; name a new or empty folder, or a workspace's .sdd`,
      ExitCode.IO,
    );
  if (!st.isDirectory()) throw refuse(st.isSymbolicLink() ? "it is a symbolic link" : "it is a file");
  // A damaged `.sdd` (what is left after losing part of it) is the very thing a restore replaces.
  if (path.basename(abs) === ".sdd" || (await isWorkspaceDir(abs))) return true;
  const entries = await readdir(abs).catch((err: unknown) => {
    throw destinationError(`cannot restore into ${shown(abs)}`, err) ?? err;
  });
  if (entries.length === 0) return true;
  throw refuse(
    `it is neither empty nor a bernstein workspace (a .sdd folder, or one holding ${WORKSPACE_MARKER_DIRS.join("/ and ")}/)`,
  );
}

/** The working folder, or undefined when it was removed. */
const workingFolder = (): string | undefined => {
  try {
    return process.cwd();
  } catch {
    return undefined;
  }
};

/** A free name to keep the tree at `abs` under: `<abs>.pre-restore-<UTC time>`. */
async function keptNameFor(abs: string): Promise<string> {
  let kept = `${abs}.pre-restore-${utcStamp()}`;
  for (let i = 1; await exists(kept); i++) kept = `${abs}.pre-restore-${utcStamp()}-${i}`;
  return kept;
}

/** A new staging folder's path beside `abs`, named so a later restore knows whose it is. */
export function stagingPathFor(abs: string): string {
  return path.join(
    path.dirname(abs),
    `${stagingPrefix(abs)}${process.pid}-${randomBytes(4).toString("hex")}`,
  );
}

/**
 * Puts the complete staging tree in place of `abs`. Into an empty place it is one atomic rename
 * (a crash before it leaves only a staging folder, removed by the next restore). Over an
 * existing target it takes two renames, so a journal first records how to finish them
 * (completeInterruptedRestore); `onJournaled` is called once it exists. Returns the kept name.
 */
export async function swapIn(
  abs: string,
  staging: string,
  o: { targetExists: boolean; keep: boolean; lockHeld: boolean; onJournaled: () => void },
): Promise<string | null> {
  if (!o.targetExists) {
    await durableRename(staging, abs).catch((err: NodeJS.ErrnoException) => {
      // Restores are kept out by the restore lock; something else (an `init`) made the target.
      if (err.code === "ENOTEMPTY" || err.code === "EEXIST")
        throw new UserError(
          `${abs} was created by another process while this restore ran; nothing was changed (restore again to replace it)`,
          ExitCode.LOCKED,
        );
      throw err;
    });
    return null;
  }
  const kept = await keptNameFor(abs);
  const journal: RestoreJournal = { target: abs, staging, kept, remove_kept: !o.keep };
  await atomicWriteFile(restoreJournalPath(abs), JSON.stringify(journal) + "\n");
  o.onJournaled();
  crashPoint("dr_restore", "after_journal");
  await durableRename(abs, kept);
  crashPoint("dr_restore", "between_renames");
  await durableRename(staging, abs);
  // Our lock file moved with the old tree; it is not a lock of anything now.
  if (o.lockHeld) await rm(path.join(kept, "runtime", "bernstein.pid"), { force: true });
  if (!o.keep) await rm(kept, { recursive: true, force: true });
  await durableUnlink(restoreJournalPath(abs));
  return kept;
}

/** Stops the live holder of a workspace's lock; `poll` throws once the restore is interrupted. */
export type StopLiveHolder = (ws: Workspace, holder: LockInfo, poll: () => void) => Promise<string>;

export interface GuardedRestore {
  /**
   * Restore even while a live process holds the target's lock: it is stopped with this, after
   * the staging folder is built (a wrong password or a corrupt archive leaves it running) and
   * before the swap, so that nothing of it writes into the restored workspace.
   */
  stopLiveHolder?: StopLiveHolder;
  /** The caller holds the target's workspace lock itself (a follower restoring its own workspace). */
  lockHeldByCaller?: boolean;
  /** Keep the previous target as `<target>.pre-restore-<ts>` (default true). */
  keep?: boolean;
  /**
   * Called once the restore can begin (its locks taken, the target's folder made, no live holder
   * in the way), just before the staging folder is filled: a command says "Restoring..." here,
   * not before a refusal that changes nothing.
   */
  onStart?: () => void;
}

/** What `build` is given besides its staging folder. */
export interface StagingBuild {
  /**
   * `stop` ends what still writes into the staging folder (a worker thread) or reads for it (a
   * download that may stall); every `stop` given runs before the folder is removed.
   */
  beforeRemove(stop: () => Promise<void>): void;
  /** Throws once the restore is interrupted: call between steps, so that it ends soon. */
  checkpoint(): void;
}

/** Thrown by `checkpoint()` of an interrupted restore; never reaches the user. */
class RestoreInterrupted extends Error {
  constructor() {
    super("the restore was interrupted");
  }
}

/**
 * Every restore (`dr restore` of an archive, a point-in-time restore): under the target's restore
 * lock, after finishing an interrupted restore and refusing a live holder, `build` fills a fresh
 * staging folder (removed on failure or interrupt, after what `build` gave `beforeRemove` has
 * run), which is then swapped in (journaled, the previous target kept unless `keep` is false).
 *
 * SIGINT/SIGTERM at any moment: the cleanup registered before anything is made stops the restore
 * (`beforeRemove`'s writer first, then `checkpoint()` and the steps here throw) and waits for its
 * failure path, the one a failed restore takes, to remove the staging folder, release both locks
 * and remove the folders it made. Only then is the removal reported, and only if the folder is
 * gone. A signal during the swap lets the swap end (a few renames) and says so.
 */
export async function buildAndSwapIn<T>(
  target: string,
  o: GuardedRestore,
  build: (staging: string, ctx: StagingBuild) => Promise<T>,
): Promise<{ value: T; target: string; kept?: string; warnings: string[] }> {
  const { abs, link } = await restoreTargetOf(target);
  // Before anything is made or locked; checked again under the restore lock below.
  await checkReplaceableTarget(abs);
  const staging = stagingPathFor(abs);
  let interrupted = false;
  // Every writer and download the build still has under way, stopped in the order given.
  const stops: (() => Promise<void>)[] = [];
  const stopWriting = async (): Promise<void> => {
    for (const stop of stops) await stop();
  };
  let swapped = false;
  let unwound: Promise<unknown> = Promise.resolve();
  const interrupt = cleanupOnInterrupt(`the restore's staging folder ${shown(staging)}`, async () => {
    interrupted = true;
    await stopWriting(); // the build fails at its next write or read
    await unwound;
    if (swapped)
      return `the restore had begun its swap and finished it: ${shown(abs)} is the restored workspace`;
    if (await exists(staging)) throw new Error(`${staging} is still there`);
  });
  const ctx: StagingBuild = {
    beforeRemove: (stop) => void stops.push(stop),
    checkpoint() {
      // interruptInProgress: a cleanup registered after this one runs first, before `interrupted`.
      if (interrupted || interruptInProgress()) throw new RestoreInterrupted();
    },
  };
  const attempt = restoreGuarded(abs, link, staging, o, build, ctx, {
    stopWriting,
    onSwapped: () => (swapped = true),
  });
  unwound = attempt.catch(() => {});
  try {
    return await attempt;
  } catch (err) {
    // The cleanup reports the interrupt and exits: no second line for the failure it caused.
    if (interrupted || interruptInProgress()) return new Promise<never>(() => {});
    throw err;
  } finally {
    if (!interruptInProgress()) await interrupt.release();
  }
}

async function restoreGuarded<T>(
  abs: string,
  link: string | undefined,
  staging: string,
  o: GuardedRestore,
  build: (staging: string, ctx: StagingBuild) => Promise<T>,
  ctx: StagingBuild,
  on: { stopWriting: () => Promise<void>; onSwapped: () => void },
): Promise<{ value: T; target: string; kept?: string; warnings: string[] }> {
  // The folders made here for the target go again when the restore fails or is interrupted.
  let madeFolders: string[];
  try {
    madeFolders = await durableMkdir(path.dirname(abs));
  } catch (err) {
    throw destinationError(`cannot restore into ${abs}: cannot create ${path.dirname(abs)}`, err) ?? err;
  }
  const warnings: string[] = [];
  if (link)
    warnings.push(
      `${shown(link)} is a symbolic link: restored into the folder it points to, ${shown(abs)} (the link is kept)`,
    );
  let restoreLock: WorkspaceLock;
  try {
    ctx.checkpoint();
    restoreLock = await acquireRestoreLock(abs);
  } catch (err) {
    await removeEmptyFolders(madeFolders);
    throw err;
  }
  let lock: WorkspaceLock | undefined;
  // Once a journal names the staging folder the restore completes, now or at the next one.
  let journaled = false;
  try {
    ctx.checkpoint();
    if (restoreLock.tookOver) warnings.push(`restore lock: ${restoreLock.tookOver}`);
    const recovered = await finishInterruptedRestore(abs);
    if (recovered) warnings.push(`${recovered} at ${abs}`);
    const targetExists = await checkReplaceableTarget(abs);
    let liveHolder: LockInfo | undefined;
    if (targetExists && !o.lockHeldByCaller)
      ({ lock, liveHolder } = await lockLiveTarget(abs, o.stopLiveHolder !== undefined, warnings));
    await removeStaleStaging(abs);
    // Until a journal names the staging folder, any failure (the final rename included) removes
    // it: a failed or interrupted restore leaves nothing behind.
    try {
      ctx.checkpoint();
      o.onStart?.();
      const value = await build(staging, ctx);
      if (liveHolder && o.stopLiveHolder) {
        const ws = new Workspace(abs);
        warnings.push(await o.stopLiveHolder(ws, liveHolder, () => ctx.checkpoint()));
        lock = await acquireLock(ws, "dr restore");
        if (lock.tookOver) warnings.push(lock.tookOver);
      }
      // The point of no return: past it an interrupt lets the swap end (it is journaled).
      ctx.checkpoint();
      const keep = o.keep ?? true;
      // `dr restore --sdd .` inside the workspace: the shell stays in the tree moved aside.
      const inTarget = targetExists && workingFolder() === abs;
      const kept = await swapIn(abs, staging, {
        targetExists,
        keep,
        lockHeld: lock !== undefined,
        onJournaled: () => (journaled = true),
      });
      on.onSwapped();
      if (targetExists) lock = undefined;
      if (inTarget)
        warnings.push(
          keep
            ? `the working folder was the target: it is now the previous state at ${kept}; cd ${abs} again to see the restored workspace`
            : `the working folder was the target and was removed (--no-keep); cd ${abs} again to see the restored workspace`,
        );
      return { value, target: abs, ...(keep && kept ? { kept } : {}), warnings };
    } catch (err) {
      if (!journaled) {
        // Nothing may still write into the folder while it is removed.
        await on.stopWriting();
        await rm(staging, { recursive: true, force: true, maxRetries: 5 }).catch(() => {});
      }
      throw ioError(`cannot restore into ${abs}`, err) ?? err;
    }
  } finally {
    await lock?.release().catch(() => {});
    await restoreLock.release().catch(() => {});
    if (!journaled) await removeEmptyFolders(madeFolders);
  }
}
