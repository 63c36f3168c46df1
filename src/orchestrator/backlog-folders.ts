/**
 * The task files a backlog folder holds, by name alone. Apart from the task files' parsing
 * (tasks.ts, which loads the YAML parser and the schema library): `status` counts tasks per
 * folder and needs neither.
 */
import { readdir } from "node:fs/promises";
import type { TaskState, Workspace } from "../workspace/layout.js";

const TASK_FILE_SUFFIX = /\.(md|ya?ml)$/i;

function isTaskFileName(name: string): boolean {
  return !name.startsWith(".") && TASK_FILE_SUFFIX.test(name);
}

/**
 * The task id a file's name gives (`T-1.md` is T-1's file): a file named after a task the WAL
 * created is that task's, whatever it holds, since the WAL has its spec.
 */
export function taskIdOfFileName(name: string): string {
  return name.replace(TASK_FILE_SUFFIX, "");
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
