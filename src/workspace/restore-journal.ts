/**
 * The journal of a restore's swap, `.<name>.restore-journal.json` beside the target: written
 * before the two renames that put a restored tree in place of an existing one (target → kept,
 * staging → target), removed after them. While it exists the target is mid-swap: possibly missing
 * (between the renames), or still the old tree (before the first). dr/restore-target.ts writes and
 * finishes it; every command that opens a workspace refuses one that is mid-swap, so that nobody
 * reads the old tree as current, or runs `init` where the restored tree belongs.
 */
import { lstat, readFile, readlink } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { shown } from "./shown-path.js";

export interface RestoreJournal {
  target: string;
  staging: string;
  kept: string | null;
  remove_kept: boolean;
}

export const restoreJournalPath = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.restore-journal.json`);

/** The journal beside `abs`; undefined when there is none; null when it cannot be read. */
export async function readRestoreJournal(abs: string): Promise<RestoreJournal | null | undefined> {
  let text: string;
  try {
    text = await readFile(restoreJournalPath(abs), "utf8");
  } catch (err) {
    // ENOTDIR: what holds the target is a file (a mistyped --sdd), so no restore was there.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    return null;
  }
  try {
    const j = JSON.parse(text) as Partial<RestoreJournal>;
    if (typeof j.target === "string" && typeof j.staging === "string") return j as RestoreJournal;
  } catch {
    // below
  }
  return null;
}

/**
 * Exit 3 when a restore's swap of `sddDir` (or of the folder its symbolic link names, where a
 * restore puts the tree) is journaled: under way, or cut short by a crash between its renames.
 */
export async function refuseMidRestore(sddDir: string): Promise<void> {
  const given = path.resolve(sddDir);
  const places = [given];
  const st = await lstat(given).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    const named = await readlink(given).catch(() => undefined);
    if (named !== undefined) places.push(path.resolve(path.dirname(given), named));
  }
  for (const abs of places) {
    if ((await readRestoreJournal(abs)) === undefined) continue;
    throw new UserError(
      `${shown(abs)} is in the middle of a restore (its journal ${shown(restoreJournalPath(abs))} is there): a restore is swapping it in now, or was cut short between its two renames; unless a \`dr restore\` is running, finish it with \`bernstein dr restore --finish --sdd ${shown(given)}\``,
      ExitCode.LOCKED,
    );
  }
}
