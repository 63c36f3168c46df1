/**
 * What one invocation of the orchestrator did, for its result and exit code: the exit code reports
 * this run, not history, so a failure a previous run already reported does not fail every later
 * run (cron and CI could not tell a new failure from it).
 */
import { ExitCode } from "../errors/errors.js";
import { interruptedExitCode, type InterruptSignal } from "../workspace/interrupt.js";
import type { OrchestratorState } from "../state/reducer.js";
import { allTasks } from "./view.js";

export interface RunResult {
  run_id: string;
  reason: "idle" | "stopped" | "forced" | "interrupted";
  /**
   * 1 (with --until-idle) only for what this run did: see `this_run`; 130/143 when SIGINT/SIGTERM
   * ended it (a foreground run interrupted; `bernstein stop` is not an interruption).
   */
  exit_code: number;
  /** The signal that ended the run, when one did. */
  interrupted_by?: InterruptSignal;
  /** Tasks per state, all runs, counted as `status` counts them (its `tasks`). */
  counts: Record<string, number>;
  /** Every task that can never run, and every failed one (all runs). */
  blocked: string[];
  failed: string[];
  /**
   * What this invocation did: tasks completed, tasks that failed terminally, tasks that became
   * unable to run (not blocked when it began: a new task, or one whose dependency failed now).
   */
  this_run: { done: number; failed: string[]; blocked: string[] };
  decisions: number;
}

/** A task that can never run, and why. */
export interface BlockedTask {
  id: string;
  why: string;
}

export class RunOutcome {
  readonly done = new Set<string>();
  readonly failed = new Set<string>();
  /** Tasks that could not run before this run did anything. */
  private blockedAtStart = new Set<string>();
  private interruptedBy: InterruptSignal | undefined;

  blockedWhenStarting(blocked: BlockedTask[]): void {
    this.blockedAtStart = new Set(blocked.map((b) => b.id));
  }

  /** SIGINT/SIGTERM asked this run to stop: however it ends, it reports the interruption. */
  interrupted(signal: InterruptSignal): void {
    this.interruptedBy ??= signal;
  }

  result(
    runId: string,
    reason: RunResult["reason"],
    blocked: BlockedTask[],
    state: OrchestratorState,
    decisions: number,
    counts: Record<string, number>,
  ): RunResult {
    const failed = allTasks(state)
      .filter((t) => t.state === "failed")
      .map((t) => t.id);
    const newlyBlocked = blocked.filter((b) => !this.blockedAtStart.has(b.id)).map((b) => b.id);
    const exit = this.interruptedBy
      ? interruptedExitCode(this.interruptedBy)
      : reason === "idle" && (this.failed.size > 0 || newlyBlocked.length > 0)
        ? ExitCode.CHECK_FAILED
        : ExitCode.OK;
    return {
      run_id: runId,
      reason: this.interruptedBy ? "interrupted" : reason,
      exit_code: exit,
      ...(this.interruptedBy && { interrupted_by: this.interruptedBy }),
      counts,
      blocked: blocked.map((b) => b.id),
      failed,
      this_run: { done: this.done.size, failed: [...this.failed].sort(), blocked: newlyBlocked },
      decisions,
    };
  }
}
