/**
 * When the WAL writer's group commit pipelines. Two ways to run groups with N appends in flight:
 *  - merged: all N callers resume, build their next entries, and go out as one group; then the
 *    disk syncs while the CPU waits. A cycle costs N·c + F (c: main-thread time per append,
 *    F: one sync), N appends per cycle.
 *  - pipelined: two halves take turns; one half syncs (on the thread pool) while the other builds.
 *    A cycle costs max(F, N/2·c) for N/2 appends.
 * Pipelining wins exactly when F < N·c: a fast disk or a busy CPU. A slow (or shared) disk
 * favours merged groups, which carry twice the appends per sync. Both quantities are measured as
 * the writer runs: F around each group's write and sync, N·c as the time the callers of a settled
 * group take to come back with their next appends.
 */
import { performance } from "node:perf_hooks";

/** Below this many appends in flight the writer never pipelines (one caller: one blocking sync). */
export const PIPELINE_MIN_IN_FLIGHT = 16;

export class GroupPacing {
  /** Whether the next group pipelines. */
  pipelining = false;
  /** Size of the newest group. */
  lastGroup = 0;
  private syncStart = 0;
  private settledAt = 0;
  private settledCount = 0;
  private sinceSettle = 0;
  /** Time the newest settled group's callers took to all append again (undefined: not yet). */
  private refillMs: number | undefined;

  constructor(private readonly now: () => number = () => performance.now()) {}

  onAppend(): void {
    if (++this.sinceSettle === this.settledCount) this.refillMs = this.now() - this.settledAt;
  }

  onGroupStart(size: number): void {
    this.lastGroup = size;
    this.syncStart = this.now();
  }

  /** At a group's end (it is durable): decides whether the next group pipelines. */
  onGroupSynced(inFlight: number): void {
    const syncMs = this.now() - this.syncStart;
    if (inFlight < PIPELINE_MIN_IN_FLIGHT) this.pipelining = false;
    else if (this.refillMs !== undefined) {
      // Pipelined, the settled group was half of those in flight: N·c is twice its refill time.
      this.pipelining = syncMs < (this.pipelining ? 2 : 1) * this.refillMs;
    }
    // Otherwise the settled group is not all back although the sync is done: the CPU is the
    // bottleneck, and the mode stays as it is.
  }

  onSettled(count: number): void {
    this.settledAt = this.now();
    this.settledCount = count;
    this.sinceSettle = 0;
    this.refillMs = undefined;
  }

  /** Pipelining with the disk idle: half of the last group is back, so that half goes out now. */
  startEarly(queued: number): boolean {
    return this.pipelining && queued * 2 >= Math.max(this.lastGroup, PIPELINE_MIN_IN_FLIGHT);
  }
}
