/**
 * loadState: the newest valid checkpoint plus the WAL entries after its position, across runs in
 * run order. The cost depends on the suffix, not on the history: the checkpoint's position is
 * found by reading its run's WAL backwards from the end, runs before it are not read at all.
 */
import {
  newestValidCheckpoint,
  rejectedCheckpointLine,
  stateOfCheckpoint,
  type Checkpoint,
  type CheckpointCheck,
} from "./checkpoint.js";
import { GENESIS_HASH, readWalSuffix, WalSuffixError } from "./wal-position.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { listRuns } from "../wal/reader.js";
import { readClosedMarker } from "../wal/recovery.js";
import type { Workspace } from "../workspace/layout.js";
import { emptyState, StateBuilder, type OrchestratorState } from "../state/reducer.js";

export interface LoadStateResult {
  state: OrchestratorState;
  /** The checkpoint used (undefined: replayed from genesis). */
  checkpoint?: { id: string; file: string; metadata: Checkpoint["metadata"] };
  /** Newer checkpoints that were not valid, with why. */
  rejected_checkpoints: { id: string; file: string; kind: string; problem: string }[];
  /** WAL entries applied after the checkpoint. */
  applied: number;
  /** Runs read (whole or from the checkpoint's position). */
  runs_read: string[];
  warnings: string[];
}

export interface LoadStateOptions {
  /** Ignore checkpoints and replay every run from genesis (tests, `doctor`). */
  fromGenesis?: boolean;
}

/**
 * Loads the orchestrator state. A break in the WAL suffix (an entry that does not hash or link)
 * is an integrity error (exit 9) naming the file, line and seq; a torn last line is a warning.
 */
export async function loadState(ws: Workspace, opts: LoadStateOptions = {}): Promise<LoadStateResult> {
  const warnings: string[] = [];
  const rejected: LoadStateResult["rejected_checkpoints"] = [];
  let used: Extract<CheckpointCheck, { ok: true }> | undefined;
  if (!opts.fromGenesis) {
    const found = await newestValidCheckpoint(ws);
    used = found.valid;
    for (const r of found.rejected) {
      rejected.push({ id: r.id, file: r.file, kind: r.kind, problem: r.problem });
      warnings.push(`checkpoint ${rejectedCheckpointLine(r, used?.id)}`);
    }
  }
  const builder = new StateBuilder(used ? stateOfCheckpoint(used.checkpoint) : emptyState(), { adopt: true });
  const runs = await listRuns(ws);
  const pos = used?.checkpoint.wal_position ?? null;
  let startIndex = 0;
  if (pos) {
    startIndex = runs.findIndex((r) => r.run_id === pos.run_id);
    if (startIndex === -1) {
      // Validation found the entry, so the file exists; listRuns could not order it (no first line?).
      throw new UserError(
        `load state: run ${pos.run_id} of checkpoint ${used!.id} is not listed`,
        ExitCode.INTEGRITY,
      );
    }
  }
  let applied = 0;
  const runsRead: string[] = [];
  for (let i = startIndex; i < runs.length; i++) {
    const run = runs[i];
    const resume = pos && i === startIndex && used?.located;
    // Only a run a crash left open (or the one being written) may end in a torn tail.
    const open = !(await readClosedMarker(ws, run.run_id));
    const suffix = readWalSuffix(
      run.file,
      resume
        ? { offset: used!.located!.end, prevHash: pos.entry_hash, nextSeq: pos.seq + 1 }
        : { offset: 0, prevHash: GENESIS_HASH, nextSeq: 0 },
      open ? (msg) => warnings.push(msg) : undefined,
    );
    runsRead.push(run.run_id);
    try {
      for await (const entry of suffix) {
        builder.apply(run.run_id, entry);
        applied++;
      }
    } catch (err) {
      if (err instanceof WalSuffixError) {
        throw new UserError(`load state: ${err.message}`, ExitCode.INTEGRITY, {
          file: err.file,
          line: err.line,
          seq: err.seq,
        });
      }
      throw err;
    }
  }
  return {
    state: builder.state,
    checkpoint: used ? { id: used.id, file: used.file, metadata: used.checkpoint.metadata } : undefined,
    rejected_checkpoints: rejected,
    applied,
    runs_read: runsRead,
    warnings,
  };
}
