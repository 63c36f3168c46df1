/**
 * The orchestrator: recovers the workspace's state (recovery.ts), then runs the backlog with agents
 * as real, detached processes, every decision through the WAL (src/state/decisions.ts, actions/). See
 * docs/orchestrator.md.
 *
 * One process per workspace (the workspace lock). Decisions are made one at a time by this loop,
 * so with `--max-agents 1` the WAL of two runs of the same backlog is the same decision for decision.
 */
import { resolveOptions } from "../json/object.js";
import { staleAfterFromEnv } from "../state/replay.js";
import { SnapshotResponder, writerPositions } from "../dr/snapshot.js";
import { ORCHESTRATOR_STOPPED } from "../state/reducer.js";
import type { InterruptSignal } from "../workspace/interrupt.js";
import { refuseOpenToOthers, type Workspace } from "../workspace/layout.js";
import { acquireLock, type WorkspaceLock } from "../workspace/lock.js";
import { adoptNewTasks } from "./actions/adopt.js";
import { claimAndSpawn } from "./actions/claim.js";
import { CheckpointCadence } from "./checkpoint-cadence.js";
import { ORCHESTRATOR_LOCK_COMMAND, clearStopRequest, type RunStatusFile } from "./control.js";
import { LIVENESS_CHECK_MS, checkAgents, collectCompletions } from "./monitoring.js";
import { countTaskFiles } from "./status.js";
import { DEFAULT_OPTIONS, type OrchestratorOptions } from "./options.js";
import { recover } from "./recovery.js";
import type { RecoverySummary } from "./recovery-summary.js";
import type { RunContext } from "./run-context.js";
import type { BlockedTask, RunResult } from "./run-outcome.js";
import { schedulable, type Schedule } from "./scheduler.js";
import { StopState, forceStop } from "./stopping.js";
import { sessions } from "./view.js";
import { Waker } from "./waker.js";
import { preflightWorktrees } from "./worktree-tasks.js";

export { DEFAULT_OPTIONS, type OrchestratorOptions, type WarningGroup } from "./options.js";
export type { RecoverySummary } from "./recovery-summary.js";
export type { RunResult } from "./run-outcome.js";

export class Orchestrator {
  private readonly stop: StopState;
  private snapshotResponder?: SnapshotResponder;

  private constructor(
    private readonly ctx: RunContext,
    private readonly status: RunStatusFile,
    private readonly lock: WorkspaceLock,
    private readonly waker: Waker,
    private readonly cadence: CheckpointCadence,
  ) {
    this.stop = new StopState(lock.info);
  }

  /** Takes the lock and recovers; the caller then calls run(). On failure the lock is released. */
  static async open(ws: Workspace, options: Partial<OrchestratorOptions>): Promise<Orchestrator> {
    // The environment's settings are resolved first: a bad value refuses before the lock or a run exists.
    const opts = resolveOptions(DEFAULT_OPTIONS, { replayStaleAfterMs: staleAfterFromEnv() }, options);
    const waker = new Waker(opts.pollMs);
    const cadence = new CheckpointCadence(opts);
    await refuseOpenToOthers(ws);
    const lock = await acquireLock(ws, ORCHESTRATOR_LOCK_COMMAND);
    if (lock.tookOver) opts.warn?.(lock.tookOver);
    try {
      await preflightWorktrees(ws, opts);
      const { ctx, status } = await recover(
        ws,
        opts,
        {
          wake: () => waker.wake(),
          onCommit: () => cadence.afterCommit(),
        },
        lock.info,
      );
      return new Orchestrator(ctx, status, lock, waker, cadence);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  get ws(): Workspace {
    return this.ctx.ws;
  }

  get runId(): string {
    return this.ctx.dlog.runId;
  }

  /** What recovery found and did (lost agents count on while the run goes). */
  get recovery(): RecoverySummary {
    return this.ctx.recovery;
  }

  /** The scheduling options this run uses (flags resolved over the defaults), as `start --json` reports them. */
  get effectiveOptions(): Record<string, number> {
    const o = this.ctx.opts;
    return {
      max_agents: o.maxAgents,
      checkpoint_every: o.checkpointEvery,
      checkpoint_interval_s: o.checkpointIntervalS,
      retry_backoff_ms: o.retryBackoffMs,
      poll_ms: o.pollMs,
    };
  }

  /**
   * Ctrl-C / SIGTERM of the process running this orchestrator: drain like `bernstein stop
   * --timeout 0` (agents keep running and are re-attached later); the run reports the signal
   * (exit 130/143), as an interrupted command does.
   */
  async interrupt(signal: InterruptSignal): Promise<void> {
    this.ctx.outcome.interrupted(signal);
    // In memory, not through a stop request file: the pass the signal lands in (or the one its
    // wake starts) would claim and spawn before it read the file.
    const taken = this.stop.take({ mode: "drain", timeout_s: 0 }, this.status, (l) => this.ctx.opts.log?.(l));
    this.waker.wake();
    await taken;
  }

  /** Schedules until idle (with untilIdle) or a stop request; then shuts down cleanly. */
  async run(): Promise<RunResult> {
    const ws = this.ctx.ws;
    this.waker.watch([
      ws.completedDir,
      ws.p("runtime", "signals"),
      ws.p("runtime", "snapshot"),
      ws.backlogDir("open"),
    ]);
    // The tasks that can never run, as the newest pass found them (a forced stop makes no pass).
    let blocked: BlockedTask[] = [];
    // From here on the loop answers a base snapshot's pause request between decisions.
    this.ctx.opts.archive?.start();
    try {
      while (true) {
        const pass = await this.pass();
        blocked = pass.blocked ?? blocked;
        if (pass.end) return await this.shutdown(pass.end, blocked);
        this.ctx.opts.flushWarnings?.();
        // DR: a backup asked for a consistent snapshot; hold here, between decisions.
        await this.atSnapshotBoundary();
        await this.waker.sleep(this.nextDeadline());
      }
    } finally {
      this.waker.close();
      this.ctx.opts.archive?.stop(); // after finish() a no-op; after a failure no final cycle
    }
  }

  /** One scheduling pass: the tasks it found blocked, and why the run ends when it does. */
  private async pass(): Promise<{ end?: RunResult["reason"]; blocked?: BlockedTask[] }> {
    const ctx = this.ctx;
    await this.stop.check(ctx, this.status, (l) => ctx.opts.log?.(l));
    if (this.stop.mode === "force") {
      await forceStop(ctx);
      return { end: "forced" };
    }
    await collectCompletions(ctx);
    await checkAgents(ctx);
    await adoptNewTasks(ctx);
    const sched = this.schedulable();
    if (!this.stop.mode) await this.claimReady(sched);
    await this.cadence.maybeCheckpoint(ctx.ws, ctx.dlog.state);
    const running = sessions(ctx.dlog.state).length;
    if (this.stop.mode === "drain" && (running === 0 || Date.now() >= this.stop.deadline)) {
      if (running)
        ctx.opts.log?.(`stop timeout: leaving ${running} agent(s) running; the next start re-attaches them`);
      return { end: "stopped", blocked: sched.blocked };
    }
    if (ctx.opts.untilIdle && running === 0) {
      const again = this.schedulable();
      if (again.ready.length === 0 && again.waiting === 0) return { end: "idle", blocked: again.blocked };
    }
    return { blocked: sched.blocked };
  }

  /**
   * When the loop must look again whatever --poll says (ms, Date.now): a retry's backoff running
   * out, a checkpoint due by interval, a drain's timeout, and the liveness check of running agents
   * — a wrapper re-attached after a restart is no child of ours and gives no exit event.
   */
  private nextDeadline(): number | undefined {
    const due: number[] = [];
    const released = this.ctx.backoff.nextReleaseAt(Date.now());
    if (released !== undefined) due.push(released);
    const checkpoint = this.cadence.nextDueAt();
    if (checkpoint !== undefined) due.push(checkpoint);
    if (this.stop.mode === "drain") due.push(this.stop.deadline);
    if (sessions(this.ctx.dlog.state).length) due.push(Date.now() + LIVENESS_CHECK_MS);
    return due.length ? Math.min(...due) : undefined;
  }

  private schedulable(): Schedule {
    return schedulable(this.ctx.dlog.state, this.ctx.files, this.ctx.backoff, this.ctx.opts.maxAgents);
  }

  /** Claims ready tasks, in order, while fewer than --max-agents run. */
  private async claimReady(sched: Schedule): Promise<void> {
    let running = sessions(this.ctx.dlog.state).length;
    for (const t of sched.ready) {
      // A signal taken while an earlier claim was being made: no claim after it.
      if (running >= this.ctx.opts.maxAgents || this.stop.mode) break;
      await claimAndSpawn(this.ctx, t);
      running = sessions(this.ctx.dlog.state).length;
    }
  }

  /**
   * A decision boundary (no decision half made): answer a DR backup's pause request. Pending
   * completion records are collected into the WAL before the pause is acknowledged, so the
   * snapshot's WAL holds every attempt finished by then, not only its record.
   */
  private async atSnapshotBoundary(): Promise<void> {
    this.snapshotResponder ??= new SnapshotResponder(this.ctx.ws);
    await this.snapshotResponder.atDecisionBoundary(async () => {
      await collectCompletions(this.ctx);
      return writerPositions(this.ctx.dlog.wal.durablePosition);
    });
  }

  /** Checkpoint, `orchestrator_stopped`, closed WAL: the next start has nothing to replay. */
  private async shutdown(reason: RunResult["reason"], blocked: BlockedTask[]): Promise<RunResult> {
    const { ws, dlog } = this.ctx;
    await this.cadence.maybeCheckpoint(ws, dlog.state, true);
    await dlog.info(ORCHESTRATOR_STOPPED, {}, { reason });
    // The folders as `status` counts them: a task only a file holds (never in the WAL) counts too.
    const { tasks } = await countTaskFiles(ws, new Set(Object.keys(dlog.state.tasks)));
    const result = this.ctx.outcome.result(this.runId, reason, blocked, dlog.state, dlog.commits, tasks);
    await dlog.wal.close({ markClosed: true, reason: "orchestrator_stopped" });
    // The last cycle ships the closed run before the lock goes: `stop` returns with it archived.
    await this.ctx.opts.archive?.finish();
    await this.ctx.opts.replication?.handOver();
    // A `stop --force` this end came before reads here whether it left agents running, unkilled.
    const leftRunning = reason === "forced" ? 0 : sessions(dlog.state).length;
    await clearStopRequest(ws);
    await this.status.write({
      state: "stopped",
      exit_code: result.exit_code,
      ended: reason,
      left_running: leftRunning,
    });
    await this.lock.release();
    for (const b of blocked) this.ctx.warn(`task ${b.id} cannot run: ${b.why}`, "blocked task");
    return result;
  }
}
