/**
 * The task files a backlog folder holds, by name alone. Apart from the task files' parsing
 * (tasks.ts, which loads the YAML parser and the schema library): `status` counts tasks per
 * folder and needs neither.
 */
import { readdir } from "node:fs/promises";
import type { TaskState, Workspace } from "../workspace/layout.js";

function isTaskFileName(name: string): boolean {
  return !name.startsWith(".") && /\.(md|ya?ml)$/i.test(name);
}

/** Names of the task files in one state folder (dotfiles, temp files and other names skipped). */
export async function listStateFolder(ws: Workspace, state: TaskState): Promise<string[]> {
  try {
    return (await readdir(ws.backlogDir(state))).filter(isTaskFileName).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}
