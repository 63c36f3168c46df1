/**
 * The delay before a failed task's next attempt: `--retry-backoff` ms, doubling per failure, at
 * most 60 s. Kept in memory only (a restart may run a retry early; the WAL holds no wall time).
 */
const MAX_DELAY_MS = 60_000;

export class RetryBackoff {
  private readonly notBefore = new Map<string, number>();

  constructor(
    private readonly firstDelayMs: number,
    private readonly wakeAt: (at: number) => void,
  ) {}

  /** Holds the task back after its `failures`-th failure, and wakes the loop when the delay is over. */
  hold(taskId: string, failures: number): void {
    const delay = Math.min(this.firstDelayMs * 2 ** Math.max(0, failures - 1), MAX_DELAY_MS);
    const at = Date.now() + delay;
    this.notBefore.set(taskId, at);
    this.wakeAt(at);
  }

  isHeld(taskId: string, now: number): boolean {
    return (this.notBefore.get(taskId) ?? 0) > now;
  }
}
