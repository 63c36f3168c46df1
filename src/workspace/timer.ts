/**
 * Timers for delays a user chose (a task's timeout, `--poll`, `dr schedule --every`, the
 * replication and archive intervals). Node's setTimeout and setInterval take at most 2^31-1 ms
 * (24.8 days): a longer delay fires after 1 ms with a TimeoutOverflowWarning, which killed a task
 * with a 30-day timeout at once and spun `start --poll 3000000000`. These wait the whole delay,
 * in steps no longer than Node's limit.
 */

/** The longest delay Node's timers take. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The longest delay these timers count down exactly: beyond a safe integer a step no longer
 * subtracts exactly (far enough beyond, not at all, and the wait never ends). Flags that are
 * delays are bounded by it (src/cli/number-option.ts).
 */
export const MAX_DELAY_MS = Number.MAX_SAFE_INTEGER;

/**
 * The longest delay in whole seconds that these timers wait: the bound of every delay a user
 * gives in seconds (`task add --timeout`, a task file's `timeout_s`, `stop --timeout`).
 */
export const MAX_DELAY_S = Math.floor(MAX_DELAY_MS / 1000);

export interface Timer {
  clear(): void;
  /** Lets the process exit while only this timer is pending (as NodeJS.Timeout's unref). */
  unref(): Timer;
}

/** Calls `fn` once, after `ms` milliseconds (Infinity: never). */
export function setLongTimeout(fn: () => void, ms: number): Timer {
  let remaining = Number.isNaN(ms) ? 0 : Math.max(0, ms);
  let refed = true;
  let cleared = false;
  let handle: NodeJS.Timeout | undefined;
  const step = (): void => {
    const wait = Math.min(remaining, MAX_TIMER_MS);
    remaining -= wait;
    handle = setTimeout(() => {
      if (cleared) return;
      if (remaining > 0) step();
      else fn();
    }, wait);
    if (!refed) handle.unref();
  };
  step();
  const timer: Timer = {
    clear() {
      cleared = true;
      clearTimeout(handle);
    },
    unref() {
      refed = false;
      handle?.unref();
      return timer;
    },
  };
  return timer;
}

/** Calls `fn` every `ms` milliseconds until cleared. */
export function setLongInterval(fn: () => void, ms: number): Timer {
  if (ms <= MAX_TIMER_MS) {
    const handle = setInterval(fn, ms);
    const timer: Timer = {
      clear: () => clearInterval(handle),
      unref() {
        handle.unref();
        return timer;
      },
    };
    return timer;
  }
  let refed = true;
  let current: Timer;
  const arm = (): void => {
    current = setLongTimeout(() => {
      arm();
      fn();
    }, ms);
    if (!refed) current.unref();
  };
  arm();
  const timer: Timer = {
    clear: () => current.clear(),
    unref() {
      refed = false;
      current.unref();
      return timer;
    },
  };
  return timer;
}
