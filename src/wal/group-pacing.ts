/**
 * When the WAL writer's group commit pipelines. Two ways to run groups with N appends in flight:
 *  - merged: all N callers resume, build their next entries, and go out as one group; then the
 *    disk syncs while the CPU waits. A cycle costs N·c + F (c: main-thread time per append,
 *    F: one sync), N appends per cycle.
 *  - pipelined: the callers split into groups of about N/2 (never fewer than OVERLAP_MIN_GROUP
 *    once syncs run); each group is written as soon as it is built and its sync runs on the
 *    thread pool beside the syncs of the older groups, while the next group builds. Syncs that
 *    overlap join the same journal commit where the filesystem can, so a cycle costs about
 *    F + (N/k)·c for N appends in k groups, and the CPU never waits for the disk.
 * Pipelined groups win whenever enough appends are in flight: on a fast disk the CPU is the
 * bottleneck and never waits; on a slow one the overlapping syncs carry more appends per unit of
 * time than one merged sync (several concurrent fdatasyncs on one file cost little more than one).
 * With few appends in flight a group syncs on the main thread: no thread-pool round trip for a
 * caller awaiting each append.
 */

/** Below this many appends in flight the writer never pipelines (one caller: one blocking sync). */
export const PIPELINE_MIN_IN_FLIGHT = 16;

/** The fewest appends a group started beside syncs in flight carries. */
export const OVERLAP_MIN_GROUP = 16;

export class GroupPacing {
  /** Whether the next group pipelines. */
  pipelining = false;
  /** Size of the newest group. */
  lastGroup = 0;

  onGroupStart(size: number): void {
    this.lastGroup = size;
  }

  /** At a group's end (it is durable): decides whether the next group pipelines. */
  onGroupSynced(inFlight: number): void {
    this.pipelining = inFlight >= PIPELINE_MIN_IN_FLIGHT;
  }

  /** Pipelining with the disk idle: half of the last group is back, so that half goes out now. */
  startEarly(queued: number): boolean {
    return this.pipelining && queued * 2 >= Math.max(this.lastGroup, PIPELINE_MIN_IN_FLIGHT);
  }

  /**
   * Pipelining with syncs in flight: half of the last group is back, and enough appends to be
   * worth a sync of their own (halving on every group would end in groups of one).
   */
  startBesideSyncs(queued: number): boolean {
    return this.pipelining && queued * 2 >= Math.max(this.lastGroup, 2 * OVERLAP_MIN_GROUP);
  }
}
