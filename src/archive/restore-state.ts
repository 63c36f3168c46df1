/**
 * The orchestrator state of a point being restored, built on the way instead of by a loadState
 * that reads every WAL again after the restore: loadState of the snapshot's copies (cut at the
 * snapshot's positions), then the reducer on each WAL entry the restore keeps that it applies
 * (built by the segments' chain check from the tokens it has just verified, not parsed again).
 * That equals a loadState of the restored workspace when the lines kept all come after every
 * line the snapshot holds in run order: one run grew, no run with entries comes after it, and
 * the checkpoint loadState picks is the same before and after. Otherwise `result` says
 * undefined and the caller loads the state as before.
 */
import { stat } from "node:fs/promises";
import { newestValidCheckpoint } from "../checkpoint/checkpoint.js";
import { loadState } from "../checkpoint/load-state.js";
import { StateBuilder, STATE_DECISIONS, type OrchestratorState } from "../state/reducer.js";
import type { WalEntry } from "../wal/entry.js";
import { listRuns } from "../wal/reader.js";
import type { Workspace } from "../workspace/layout.js";
import type { StreamEnd } from "./streams.js";

const CHANGES_STATE = new Set<string>(STATE_DECISIONS);

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

  /**
   * Which entries the state needs: commits of the types the reducer applies. For the others (an
   * intent, a type the reducer ignores) only the position moves.
   */
  static needs(decisionType: string, committed: boolean): boolean {
    return committed && CHANGES_STATE.has(decisionType);
  }

  /**
   * Applies the entries `needs` picked among WAL lines of run `runId` just kept (verified, in
   * order); the run now ends at `end`.
   */
  apply(runId: string, entries: WalEntry[], end: StreamEnd): void {
    if (!this.builder) return;
    try {
      for (const e of entries) this.builder.apply(runId, e);
    } catch {
      this.builder = undefined; // an entry the reducer cannot take: the caller loads the state itself
      return;
    }
    if (end.seq !== undefined && end.entry_hash !== undefined)
      this.grown.set(runId, { seq: end.seq, entry_hash: end.entry_hash });
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
