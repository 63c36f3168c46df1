/**
 * Where each task's file is, as this run knows it, and moving it to the folder of the task's new
 * state (the folder is the state: docs/orchestrator.md). A file that moved under us (a crash after
 * a rename, before its commit) is found again by name in the other folders.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import type { TaskState, Workspace } from "../workspace/layout.js";
import type { WarningGroup } from "./options.js";
import { moveTaskFile } from "./tasks.js";
import { taskView } from "./view.js";
import type { OrchestratorState } from "../state/reducer.js";

const SCHEDULED_FOLDERS: TaskState[] = ["open", "claimed", "done", "failed"];

export class TaskFiles {
  private readonly fileOf = new Map<string, string>();

  constructor(
    private readonly ws: Workspace,
    private readonly warn: (line: string, group?: WarningGroup) => void,
  ) {}

  get(id: string): string | undefined {
    return this.fileOf.get(id);
  }

  has(id: string): boolean {
    return this.fileOf.has(id);
  }

  set(id: string, file: string): void {
    this.fileOf.set(id, file);
  }

  /** The backlog folder the task's file is in (undefined: no file known). */
  folderOf(id: string): string | undefined {
    const file = this.fileOf.get(id);
    return file ? path.basename(path.dirname(file)) : undefined;
  }

  /** File names of the tasks the state knows: files in `open/` that are not new. */
  namesOfKnownTasks(state: OrchestratorState): Set<string> {
    const known = new Set<string>();
    for (const [id, f] of this.fileOf) if (taskView(state, id)) known.add(path.basename(f));
    return known;
  }

  /** Moves the task's file to the folder of `to`; without a file the WAL alone records the state. */
  async move(id: string, to: TaskState): Promise<void> {
    const file = this.fileOf.get(id);
    if (!file) {
      this.warn(`task ${id}: no task file found; state recorded in the WAL only`, "missing task file");
      return;
    }
    try {
      this.fileOf.set(id, await moveTaskFile(this.ws, file, to));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      if (await this.moveFoundByName(id, file, to)) return;
      this.warn(
        `task ${id}: task file ${file} disappeared; state recorded in the WAL only`,
        "missing task file",
      );
    }
  }

  /** Moved already (a crash after the rename): find it by name in the other folders. */
  private async moveFoundByName(id: string, file: string, to: TaskState): Promise<boolean> {
    for (const st of SCHEDULED_FOLDERS) {
      const candidate = path.join(this.ws.backlogDir(st), path.basename(file));
      const found = await stat(candidate).then(
        () => true,
        () => false,
      );
      if (found) {
        this.fileOf.set(id, await moveTaskFile(this.ws, candidate, to));
        return true;
      }
    }
    return false;
  }
}
