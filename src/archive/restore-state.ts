/**
 * The orchestrator state of a point being restored, built on the way instead of by a loadState
 * that reads every WAL again after the restore: loadState of the snapshot's copies (cut at the
 * snapshot's positions), then the reducer on each WAL line the restore keeps. That equals a
 * loadState of the restored workspace when the lines kept all come after every line the snapshot
 * holds in run order: one run grew, no run with entries comes after it, and the checkpoint
 * loadState picks is the same before and after. Otherwise `result` says undefined and the caller
 * loads the state as before.
 */
import { stat } from "node:fs/promises";
import { newestValidCheckpoint } from "../checkpoint/checkpoint.js";
import { loadState } from "../checkpoint/load-state.js";
import { parseJson } from "../json/canonical.js";
import type { JsonObject } from "../json/object.js";
import { StateBuilder, STATE_DECISIONS, type OrchestratorState } from "../state/reducer.js";
import { toWalEntry } from "../wal/entry.js";
import { listRuns } from "../wal/reader.js";
import type { Workspace } from "../workspace/layout.js";
import { TAIL_BYTES, writtenTail } from "./apply-segments.js";

/** `"decision_type":"<type without escapes>"` right after the timestamp, as the writers print it. */
const WRITTEN_TYPE =
  /^\{"seq":(\d+),"prev_hash":"[0-9a-f]+","timestamp":[-+.\deE]+,"decision_type":"([^"\\]*)"/;
const CHANGES_STATE = new Set<string>(STATE_DECISIONS);
const HEAD_BYTES = 256;

export class PointState {
  private builder?: StateBuilder;
  private checkpointId?: string;
  /** Runs whose kept lines went into the state, with the last one's position. */
  private readonly grown = new Map<string, { seq: number; entry_hash: string }>();

  private constructor(private readonly ws: Workspace) {}

  /** The snapshot's state; call once every WAL copy is cut at the snapshot's position. */
  static async ofSnapshot(ws: Workspace): Promise<PointState> {
    const p = new PointState(ws);
    try {
      const loaded = await loadState(ws);
      p.builder = new StateBuilder(loaded.state, { adopt: true });
      p.checkpointId = loaded.checkpoint?.id;
    } catch {
      // Damage in a copy: the caller's own loadState names it after the restore, as before.
    }
    return p;
  }

  /** Applies `lines` (whole, verified WAL lines of run `runId`, in order) to the state. */
  apply(runId: string, lines: Buffer): void {
    if (!this.builder) return;
    try {
      for (let start = 0; start < lines.length;) {
        const nl = lines.indexOf(0x0a, start);
        this.applyLine(runId, lines, start, nl);
        start = nl + 1;
      }
    } catch {
      this.builder = undefined; // a line these cannot read: the caller loads the state itself
    }
  }

  private applyLine(runId: string, lines: Buffer, start: number, nl: number): void {
    const head = WRITTEN_TYPE.exec(lines.toString("latin1", start, Math.min(nl, start + HEAD_BYTES)));
    const tail = writtenTail(lines.toString("latin1", Math.max(start, nl - TAIL_BYTES), nl));
    if (head && tail && (!tail.committed || !CHANGES_STATE.has(head[2]!))) {
      // An intent, or a type the reducer ignores: only the position moves.
      this.grown.set(runId, { seq: Number(head[1]), entry_hash: tail.entryHash });
      return;
    }
    const entry = toWalEntry(parseJson(lines.toString("utf8", start, nl)) as JsonObject);
    this.builder!.apply(runId, entry);
    this.grown.set(runId, { seq: entry.seq, entry_hash: entry.entry_hash });
  }

  /** The state at the point, or undefined when it cannot be proven equal to a loadState of `ws`. */
  async result(): Promise<OrchestratorState | undefined> {
    if (!this.builder || this.grown.size > 1) return undefined;
    const found = await newestValidCheckpoint(this.ws);
    if (found.valid?.id !== this.checkpointId) return undefined;
    const [grownRun] = [...this.grown.keys()];
    if (grownRun !== undefined) {
      const runs = await listRuns(this.ws);
      const at = runs.findIndex((r) => r.run_id === grownRun);
      for (const later of runs.slice(at + 1)) if ((await stat(later.file)).size > 0) return undefined;
      const pos = this.grown.get(grownRun)!;
      this.builder.state.wal_position = { run_id: grownRun, seq: pos.seq, entry_hash: pos.entry_hash };
    }
    return this.builder.state;
  }
}
