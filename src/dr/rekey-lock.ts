/**
 * One `dr rekey` of a local archive at a time. Two rekeys of the same archive would each read
 * the old keys, each write their own, and each report success while only the last one's keys
 * open it (a `.enc`), or tear each other's header journal (an in-place `.age`). So a rekey holds
 * `.<name>.rekey.lock` beside the archive (the workspace lock's format and stale-lock takeover,
 * workspace/lock.ts) from before it reads the archive until its catalogue row is written; a
 * second one is refused with exit 3 before it reads or writes anything. A lock whose process
 * is gone (SIGKILL) is taken over, and the rekey then rolls an interrupted header journal
 * forward (age/header-journal.ts) and removes that process's temp files.
 *
 * Readers (`dr verify`, `dr restore`) take no lock: `watchForRekey` tells them afterwards
 * whether a rekey may have changed the archive under them, so that a healthy archive read
 * mid-rekey is reported as busy (exit 3), not as damaged.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError, ioError } from "../errors/errors.js";
import { removeDeadTemps } from "../workspace/durable.js";
import { acquireLockFile, describeHolder, readLockFile, type WorkspaceLock } from "../workspace/lock.js";
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

/** What identifies the bytes of a local archive: a rename gives a new inode, an in-place rekey a new header. */
async function fingerprint(file: string): Promise<string> {
  const s = await stat(file, { bigint: true }).catch(() => undefined);
  if (!s) return "gone";
  // Loaded for an age archive only: a plain restore loads none of age's code.
  const header = file.endsWith(".age")
    ? await (await import("./age/rekey.js")).readAgeHeader(file).then(
        (h) => h.header.toString("base64"),
        () => "",
      )
    : "";
  return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${header}`;
}

export interface RekeyWatch {
  /**
   * After a read found the archive not as recorded: exit 3 when a rekey held its lock when the
   * watch began or holds it now, or when the archive changed since the watch began (a rekey
   * that ran in between); undefined when none did, and the finding stands.
   */
  busy(): Promise<UserError | undefined>;
}

/**
 * Begins watching `file` for rekeys; call before reading what is recorded of it (sidecar, record,
 * catalogue row) and the file itself. Its fingerprint is taken before the lock is looked at, so
 * a rekey that takes the lock after that look changes the fingerprint before `busy` runs.
 */
export async function watchForRekey(file: string): Promise<RekeyWatch> {
  const before = await fingerprint(file);
  const lockFile = rekeyLockPath(file);
  const heldBefore = await readLockFile(lockFile);
  return {
    async busy() {
      const now = await readLockFile(lockFile);
      const held = now.state === "held" ? now : heldBefore.state === "held" ? heldBefore : undefined;
      if (held) {
        return new UserError(
          `${shown(file)} is being rekeyed by ${describeHolder(held.info)}; run again once it has finished`,
          ExitCode.LOCKED,
          { holder: held.info },
        );
      }
      if ((await fingerprint(file)) !== before) {
        return new UserError(
          `${shown(file)} was rekeyed (or replaced) while it was read; run again`,
          ExitCode.LOCKED,
        );
      }
      return undefined;
    },
  };
}
