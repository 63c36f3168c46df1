/**
 * The permissions a restore gives what it creates. An archive's modes are data from wherever the
 * archive came from: a 0666 file or a 0777 folder restored as it is would let every local user
 * rewrite the WAL, the backlog or the audit log. So a restored file or folder gets the archive's
 * permission bits masked by the process's umask (as tar does for a user other than root) and
 * never writable by group or others inside `.sdd/`. setuid, setgid and sticky never survive.
 */
import { closeSync, fstatSync, openSync, unlinkSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";

/** Group- and other-write: never on anything a restore creates. */
const GROUP_OTHER_WRITE = 0o022;

export function restoredMode(archived: number, umask: number): number {
  return archived & 0o777 & ~umask & ~GROUP_OTHER_WRITE;
}

/**
 * The process's umask, from a probe file created in `dir` (reading it with process.umask() is
 * deprecated: that sets and resets the mask, and a worker thread cannot do it).
 */
export function umaskOf(dir: string): number {
  const probe = path.join(dir, `.umask-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fd = openSync(probe, "wx", 0o777);
  try {
    return 0o777 & ~fstatSync(fd).mode;
  } finally {
    closeSync(fd);
    unlinkSync(probe);
  }
}
