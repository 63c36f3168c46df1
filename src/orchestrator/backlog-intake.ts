/**
 * New task files in `backlog/open/` (written by `task add`, which takes no lock), read for
 * adoption. A file that cannot be adopted (malformed, or reusing an existing task's id) stays where
 * it is and is read again only once it changes; each malformed file is reported once per run.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import type { Workspace } from "../workspace/layout.js";
import type { WarningGroup } from "./options.js";
import { listStateFolder } from "./backlog-folders.js";
import { readTaskFile } from "./tasks.js";
import type { TaskSpec } from "./task-spec.js";

export interface NewTaskFile {
  spec: TaskSpec;
  file: string;
}

export class BacklogIntake {
  /** file → its ctime when it was rejected (a write or a chmod, as its refusal asks, changes it). */
  private readonly rejected = new Map<string, number>();
  private readonly malformedReported = new Set<string>();

  constructor(
    private readonly ws: Workspace,
    private readonly warn: (line: string, group?: WarningGroup) => void,
    /** Where the run's malformed files are listed (the recovery summary's `malformed`). */
    private readonly malformed: string[],
  ) {}

  /** Files in `open/` not named in `known` and not rejected unchanged, in id order. */
  async newFiles(known: Set<string>): Promise<NewTaskFile[]> {
    const fresh: NewTaskFile[] = [];
    const errors: string[] = [];
    for (const name of await listStateFolder(this.ws, "open")) {
      if (known.has(name)) continue;
      const file = path.join(this.ws.backlogDir("open"), name);
      const changed = await changedAt(file);
      if (changed < 0 || this.rejected.get(file) === changed) continue;
      try {
        fresh.push({ spec: await readTaskFile(file, "open"), file });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        errors.push((err as Error).message);
        this.rejected.set(file, changed);
      }
    }
    this.reportMalformed(errors);
    return fresh.sort((a, b) => (a.spec.id < b.spec.id ? -1 : a.spec.id > b.spec.id ? 1 : 0));
  }

  /** Left in place, not adopted: read again only when it changes. */
  async reject(file: string): Promise<void> {
    this.rejected.set(file, await changedAt(file));
  }

  reportMalformed(errors: string[]): void {
    for (const e of errors) {
      if (this.malformedReported.has(e)) continue;
      this.malformedReported.add(e);
      this.malformed.push(e);
      this.warn(`malformed task file left in place: ${e}`, "malformed task file");
    }
  }
}

function changedAt(file: string): Promise<number> {
  return stat(file).then(
    (st) => st.ctimeMs,
    () => -1,
  );
}
