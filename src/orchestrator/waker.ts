/**
 * The loop's pause between scheduling passes. It ends after the poll interval, or earlier when a
 * watched folder changes (a completion record, a stop or snapshot request, a new task file), a
 * wrapper this process spawned exits, or a retry's backoff runs out.
 */
import { watch, type FSWatcher } from "node:fs";
import { setLongTimeout } from "../workspace/timer.js";

export class Waker {
  private watchers: FSWatcher[] = [];
  private wakeResolve: (() => void) | null = null;

  constructor(private readonly pollMs: number) {}

  wake(): void {
    const r = this.wakeResolve;
    this.wakeResolve = null;
    r?.();
  }

  sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setLongTimeout(() => this.wake(), this.pollMs);
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
