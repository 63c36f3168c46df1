/** When the run writes a checkpoint: after `--checkpoint-every` commits, or `--checkpoint-interval` seconds with commits. */
import type { Workspace } from "../workspace/layout.js";
import { checkpointState } from "./checkpointing.js";
import type { OrchestratorOptions } from "./options.js";
import type { OrchestratorState } from "../state/reducer.js";

export class CheckpointCadence {
  private commitsSinceCheckpoint = 0;
  private lastCheckpointAt = Date.now();

  constructor(private readonly opts: Pick<OrchestratorOptions, "checkpointEvery" | "checkpointIntervalS">) {}

  afterCommit(): void {
    this.commitsSinceCheckpoint++;
  }

  /** When a checkpoint falls due by interval (ms, Date.now); undefined while none will without commits. */
  nextDueAt(): number | undefined {
    const { checkpointIntervalS } = this.opts;
    if (checkpointIntervalS <= 0 || this.commitsSinceCheckpoint === 0) return undefined;
    return this.lastCheckpointAt + checkpointIntervalS * 1000;
  }

  /** Writes a checkpoint when one is due; `force` (at stop) always does, with the operator session row. */
  async maybeCheckpoint(ws: Workspace, state: OrchestratorState, force = false): Promise<void> {
    const { checkpointEvery, checkpointIntervalS } = this.opts;
    const dueByCount = checkpointEvery > 0 && this.commitsSinceCheckpoint >= checkpointEvery;
    const dueByTime =
      checkpointIntervalS > 0 &&
      this.commitsSinceCheckpoint > 0 &&
      Date.now() - this.lastCheckpointAt >= checkpointIntervalS * 1000;
    if (!force && !dueByCount && !dueByTime) return;
    await checkpointState(ws, state, { sessionRow: force });
    this.commitsSinceCheckpoint = 0;
    this.lastCheckpointAt = Date.now();
  }
}
