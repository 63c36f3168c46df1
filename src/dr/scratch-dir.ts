/**
 * The private temp folders of `dr verify` and `dr drill` (an extracted archive, a scratch backup
 * and its restore: tens of MB) and of `dr restore --dry-run` (the state an archive without
 * recorded state checks holds, to check it). SIGINT and SIGTERM remove them (interrupt.ts); a SIGKILL or a
 * power loss cannot, so the folder's name carries its owner's pid, and every later verify or
 * drill removes the folders whose owner is dead, as a restore does with its staging folders
 * (restore-target.ts). The pid is checked on this host only.
 */
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isProcessAlive } from "../workspace/process.js";

export type ScratchKind = "verify" | "drill" | "dry-run";
const KINDS: readonly ScratchKind[] = ["verify", "drill", "dry-run"];

/** `bernstein-<kind>-<pid>-` plus mkdtemp's six characters. */
const SCRATCH_NAME = new RegExp(`^bernstein-(?:${KINDS.join("|")})-(\\d+)-[A-Za-z0-9]{6}$`);

/** A new private temp folder of this process for `kind`. */
export function makeScratchDir(kind: ScratchKind): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `bernstein-${kind}-${process.pid}-`));
}

/**
 * Removes the verify, drill and dry-run temp folders whose owner died. Only folders of that exact name,
 * of this user and not a symbolic link are touched; one whose pid is alive (or was taken by
 * another process since) is left. Returns the paths removed.
 */
export async function removeDeadScratchDirs(): Promise<string[]> {
  const dir = os.tmpdir();
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(SCRATCH_NAME.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isProcessAlive(pid)) continue;
    const full = path.join(dir, name);
    const st = await lstat(full).catch(() => undefined);
    if (!st?.isDirectory() || st.uid !== process.getuid?.()) continue;
    await rm(full, { recursive: true, force: true, maxRetries: 5 }).then(
      () => removed.push(full),
      () => {},
    );
  }
  return removed;
}
