/**
 * The uncommitted index of a point being restored, from what the restore reads anyway: the
 * intents of each WAL's snapshot copy (read once, up to the snapshot's position) and those of the
 * lines applied from segments (seen as they are kept). Each run's rows wait in a scratch file, so
 * memory does not grow with the intents; rebuildUncommittedIndex then writes them in run order,
 * reading the WAL itself only for a run this did not see whole (damage in a snapshot copy, a WAL
 * no stream names): the rows are exactly those a rebuild from the WALs gives.
 */
import { open, rm, mkdir, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { writeAllAt } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";
import type { RunInfo } from "../wal/reader.js";
import { readWalEntries } from "../wal/reader.js";
import { rebuildUncommittedIndex, uncommittedRowLine, type UncommittedRow } from "../wal/recovery.js";
import type { KeptIntent } from "./apply-segments.js";
import type { StreamEnd } from "./streams.js";

const FLUSH_AT = 1 << 16;

class RunRows {
  private pending = "";
  /** The snapshot copy could not be read whole: the index rebuild reads this run's WAL. */
  fromWal = false;
  private closed = false;
  constructor(
    readonly runId: string,
    readonly file: string,
    private readonly fh: FileHandle,
  ) {}

  async add(intents: Iterable<KeptIntent>): Promise<void> {
    for (const i of intents)
      this.pending += uncommittedRowLine({ run_id: this.runId, seq: i.seq, entry_hash: i.entry_hash });
    if (this.pending.length > FLUSH_AT) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending !== "") await writeAllAt(this.fh, this.pending, null);
    this.pending = "";
  }

  /** Writes what is pending and closes the file (once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}

export class RestoreIntents {
  private readonly runs = new Map<string, RunRows>();
  private readonly dir: string;

  constructor(private readonly ws: Workspace) {
    // Inside the staging folder, so it goes wherever the staging goes; removed by `writeIndex`.
    this.dir = ws.p("runtime", "restore-intents");
  }

  /**
   * Starts run `runId`'s rows with the intents of its WAL's snapshot copy (`start`: where that
   * copy ends; undefined: no copy). Returns the sink for the intents applied after it.
   */
  async begin(runId: string, walFile: string, start: StreamEnd | undefined): Promise<RunRows> {
    await mkdir(this.dir, { recursive: true });
    const rows = new RunRows(runId, walFile, await open(this.partOf(runId), "w", 0o600));
    this.runs.set(runId, rows);
    const last = start?.seq ?? -1;
    if (last < 0) return rows;
    try {
      for await (const { entry } of readWalEntries(walFile, { runId })) {
        if (!entry.committed) await rows.add([entry]);
        if (entry.seq >= last) break;
      }
    } catch {
      rows.fromWal = true; // as a rebuild from the WALs would: rows up to the damage, then none
    }
    return rows;
  }

  /** Writes the uncommitted index (atomically, durably) and removes the scratch rows. */
  async writeIndex(): Promise<void> {
    try {
      await this.close();
      await rebuildUncommittedIndex(this.ws, (run) => this.knownRows(run));
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Writes and closes the scratch files (after a failure too: the staging folder then goes). */
  async close(): Promise<void> {
    for (const r of this.runs.values()) await r.close();
  }

  private knownRows(run: RunInfo): AsyncIterable<UncommittedRow> | undefined {
    const rows = this.runs.get(run.run_id);
    if (!rows || rows.fromWal || path.resolve(rows.file) !== path.resolve(run.file)) return undefined;
    return readRows(this.partOf(run.run_id));
  }

  private partOf(runId: string): string {
    return path.join(this.dir, `${runId}.rows`);
  }
}

async function* readRows(file: string): AsyncGenerator<UncommittedRow> {
  for await (const line of readLinesForward(file)) {
    if (line.text !== "") yield JSON.parse(line.text) as UncommittedRow;
  }
}
