/**
 * The delay before a failed task's next attempt: `--retry-backoff` ms, doubling per failure, at
 * most 60 s. Kept in memory only (a restart may run a retry early; the WAL holds no wall time).
 */
const MAX_DELAY_MS = 60_000;

export class RetryBackoff {
  private readonly notBefore = new Map<string, number>();

  constructor(private readonly firstDelayMs: number) {}

  /** Holds the task back after its `failures`-th failure. */
  hold(taskId: string, failures: number): void {
    const delay = Math.min(this.firstDelayMs * 2 ** Math.max(0, failures - 1), MAX_DELAY_MS);
    this.notBefore.set(taskId, Date.now() + delay);
  }

  isHeld(taskId: string, now: number): boolean {
    return (this.notBefore.get(taskId) ?? 0) > now;
  }

  /** When the next held task may run (Date.now ms), for the loop to wake then; undefined: none held. */
  nextReleaseAt(now: number): number | undefined {
    let next: number | undefined;
    for (const [taskId, at] of this.notBefore) {
      if (at <= now) this.notBefore.delete(taskId);
      else if (next === undefined || at < next) next = at;
    }
    return next;
  }
}
