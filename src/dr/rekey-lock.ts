/**
 * One `dr rekey` of a local archive at a time. Two rekeys of the same archive would each read
 * the old keys, each write their own, and each report success while only the last one's keys
 * open it (a `.enc`), or tear each other's header journal (an in-place `.age`). So a rekey holds
 * `.<name>.rekey.lock` beside the archive (the workspace lock's format and stale-lock takeover,
 * workspace/lock.ts) from before it reads the archive until its catalogue row is written; a
 * second one is refused with exit 3 before it reads or writes anything. A lock whose process
 * is gone (SIGKILL) is taken over, and the rekey then rolls an interrupted header journal
 * forward (age/header-journal.ts) and removes that process's temp files.
 */
import path from "node:path";
import { ExitCode, UserError, ioError } from "../errors/errors.js";
import { removeDeadTemps } from "../workspace/durable.js";
import { acquireLockFile, describeHolder, type WorkspaceLock } from "../workspace/lock.js";
import { shown } from "../workspace/shown-path.js";

/** The rekey lock of the local archive `archive`. */
export const rekeyLockPath = (archive: string): string =>
  path.join(path.dirname(archive), `.${path.basename(archive)}.rekey.lock`);

/** The names a rekey of `archive` writes through temp files: the archive (or its `.age` conversion), sidecar, record, journal. */
function rekeyTargets(archive: string): Set<string> {
  const base = path.basename(archive);
  const archives = base.endsWith(".enc") ? [base, base.replace(/\.enc$/, ".age")] : [base];
  return new Set(archives.flatMap((a) => [a, `${a}.sha256`, `${a}.json`, `${a}.rekey-journal`]));
}

/**
 * Takes the rekey lock of `archive`, or exit 3 naming the rekey that holds it; then removes the
 * temp files a killed rekey of it left (only a dead pid's). Undefined when the archive's folder
 * does not exist: there is nothing to rekey, and the rekey's own read says so.
 */
export async function acquireRekeyLock(archive: string): Promise<WorkspaceLock | undefined> {
  let lock: WorkspaceLock;
  try {
    lock = await acquireLockFile(rekeyLockPath(archive), {
      command: "dr rekey",
      refuse: (holder) =>
        new UserError(
          `${shown(archive)} is being rekeyed by ${describeHolder(holder)}; nothing changed: wait for it to finish, then run again if you still need to`,
          ExitCode.LOCKED,
          { holder },
        ),
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw ioError(`cannot rekey ${shown(archive)}`, err) ?? err;
  }
  try {
    const targets = rekeyTargets(archive);
    await removeDeadTemps(path.dirname(archive), (name) => targets.has(name));
  } catch (err) {
    await lock.release();
    throw err;
  }
  return lock;
}
