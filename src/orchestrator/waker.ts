/**
 * The loop's pause between scheduling passes. It ends after the poll interval, or earlier when a
 * watched folder changes (a completion record, a stop or snapshot request, a new task file), a
 * wrapper this process spawned exits, or a time the loop must act at comes (a retry's backoff runs
 * out, a drain's deadline passes, a checkpoint interval or an agent liveness check falls due).
 */
import { watch, type FSWatcher } from "node:fs";
import { setLongTimeout } from "../workspace/timer.js";

export class Waker {
  private watchers: FSWatcher[] = [];
  private wakeResolve: (() => void) | null = null;
  // A wake that came while the loop was busy (a wrapper that exited mid-pass): the next sleep
  // returns at once, or the change would wait a whole poll interval to be seen.
  private woken = false;

  constructor(private readonly pollMs: number) {}

  wake(): void {
    const r = this.wakeResolve;
    this.wakeResolve = null;
    if (r) r();
    else this.woken = true;
  }

  /**
   * Until a wake, the poll interval, or `until` (ms, Date.now: the loop's next time-based work). A
   * timer may fire a millisecond early: the pass then finds the work not yet due and sleeps the rest.
   */
  sleep(until?: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    const ms = until === undefined ? this.pollMs : Math.min(this.pollMs, Math.max(0, until - Date.now()));
    return new Promise<void>((resolve) => {
      const timer = setLongTimeout(() => this.wake(), ms);
      this.wakeResolve = () => {
        timer.clear();
        resolve();
      };
    });
  }

  /** Wakes the loop on any change in these folders (a folder that cannot be watched is polled). */
  watch(dirs: string[]): void {
    for (const dir of dirs) {
      try {
        this.watchers.push(watch(dir, () => this.wake()));
      } catch {
        // polling covers it
      }
    }
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}
