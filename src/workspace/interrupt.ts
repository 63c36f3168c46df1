/**
 * Ctrl-C (SIGINT) and SIGTERM during work that leaves something partial behind: a backup's temp
 * file, a restore's staging folder, an S3 multipart upload. Such work registers a cleanup for as
 * long as the partial thing exists. While any is registered, the first signal runs every
 * registered cleanup, the newest first and one at a time, prints one line on stderr and exits
 * with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a command
 * killed by it. Newest first: work started inside other work is undone before the work that
 * holds it, which may remove the folder both were in only once it is empty. With nothing
 * registered a signal keeps its default action (or the command's own handler).
 *
 * A command that handles these signals itself keeps its meaning: `dr schedule` stops after the
 * run in progress, `start` drains. This handler runs first (prepended) and stands aside while
 * another listener is registered; those commands listen with `onFirstInterrupt`, which stops
 * listening to both at the first, so a second signal, of either kind, interrupts (and without
 * cleanups registered ends the process at once: the default action). A signal during the
 * cleanups exits at once.
 *
 * The interrupted work goes on running while its cleanup runs (one thread, no preemption), so it
 * must not pass a point of no return (a rename into place, a restore's swap) after its cleanup
 * has started: `release()` before that point never settles once an interrupt is cleaning up.
 * Work of many steps that makes things as it goes (a restore: folders, locks, a staging tree
 * written by a worker thread) is better stopped than raced: its cleanup tells it to stop, waits
 * until its own failure path has removed what it made, and checks that it is gone
 * (restore-target.ts); removing it from under work still running would let that work make it
 * again after the removal was reported.
 *
 * A line drawn on the terminal (a progress bar, redrawn in place, the cursor at its end) is
 * registered too: the signal takes it away before anything else, so the line printed on
 * interrupt starts on a line of its own, and a signal while one is drawn exits the same way
 * (130/143, one line) even when nothing partial is registered.
 */

import { ExitCode, type ExitCodeValue } from "../errors/errors.js";

const SIGNALS = ["SIGINT", "SIGTERM"] as const;
export type InterruptSignal = (typeof SIGNALS)[number];
type Signal = InterruptSignal;

/** The exit code of a command a signal interrupted: 128 + its number, as a shell reports it. */
export function interruptedExitCode(signal: InterruptSignal): ExitCodeValue {
  return ExitCode[signal];
}

/**
 * What a cleanup did when it did not remove `what` but something else (a restore past its swap
 * finishes it): the line printed on interrupt says this instead of "removed <what>".
 */
export type CleanupOutcome = string | void;

interface Registered {
  /** What the cleanup removes, for the line printed on interrupt. */
  what: string;
  run: () => Promise<CleanupOutcome> | CleanupOutcome;
  /** Not named in the line (a lock released: nothing the user has to know was partial). */
  silent?: boolean;
}

const registered = new Set<Registered>();
const drawnLines = new Set<() => void>();
let cleaning: Promise<void> | undefined;

export interface InterruptCleanup {
  /**
   * Unregisters the cleanup (the partial thing is gone, or about to become the real thing).
   * Never settles when an interrupt has started cleaning up: the process is about to exit.
   */
  release(): Promise<void>;
}

function onSignal(signal: Signal): void {
  const code = interruptedExitCode(signal);
  if (cleaning) process.exit(code);
  if (process.listenerCount(signal) > 1) return; // the command handles it (see above)
  const clears = [...drawnLines];
  drawnLines.clear();
  for (const clear of clears) clear();
  const jobs = [...registered];
  registered.clear();
  cleaning = runNewestFirst(jobs).then((results) => {
    const removed: string[] = [];
    const otherwise: string[] = [];
    const failed: string[] = [];
    results.forEach((r, i) => {
      if (jobs[i]!.silent) return;
      if (r.status === "rejected") failed.push(jobs[i]!.what);
      else if (typeof r.value === "string") otherwise.push(r.value);
      else removed.push(jobs[i]!.what);
    });
    let line = `bernstein: interrupted by ${signal}`;
    if (removed.length) line += `; removed ${removed.join(", ")}`;
    if (failed.length) line += `; could not remove ${failed.join(", ")}`;
    for (const done of otherwise) line += `; ${done}`;
    process.stderr.write(`${line}\n`);
    process.exit(code);
  });
}

/** Runs each job after the ones registered after it; the outcomes in registration order. */
async function runNewestFirst(jobs: Registered[]): Promise<PromiseSettledResult<CleanupOutcome>[]> {
  const results: PromiseSettledResult<CleanupOutcome>[] = [];
  for (let i = jobs.length - 1; i >= 0; i--) {
    try {
      results[i] = { status: "fulfilled", value: await jobs[i]!.run() };
    } catch (reason) {
      results[i] = { status: "rejected", reason };
    }
  }
  return results;
}

const listeners = {
  SIGINT: () => onSignal("SIGINT"),
  SIGTERM: () => onSignal("SIGTERM"),
};

function listen(on: boolean): void {
  for (const signal of SIGNALS) {
    if (on) process.prependListener(signal, listeners[signal]);
    else process.off(signal, listeners[signal]);
  }
}

const listening = (): boolean => registered.size > 0 || drawnLines.size > 0;

/**
 * Runs `cleanup` if SIGINT or SIGTERM arrives before `release()`; `what` names what it removes.
 * A cleanup that throws is reported as "could not remove <what>": it must throw unless the thing
 * is gone (or return what it did instead, see CleanupOutcome). `silent`: left out of the line.
 * Cleanups run newest first, so one registered before another runs after it.
 */
export function cleanupOnInterrupt(
  what: string,
  cleanup: () => Promise<CleanupOutcome> | CleanupOutcome,
  opts: { silent?: boolean } = {},
): InterruptCleanup {
  const entry: Registered = { what, run: cleanup, silent: opts.silent };
  if (!listening() && !cleaning) listen(true);
  registered.add(entry);
  return {
    release() {
      if (cleaning) return new Promise<void>(() => {});
      if (registered.delete(entry) && !listening()) listen(false);
      return Promise.resolve();
    },
  };
}

/**
 * A line is drawn on the terminal until the returned function is called: on SIGINT or SIGTERM
 * `clear` (synchronous) removes it first. `clear` is not called after the returned function.
 */
export function clearOnInterrupt(clear: () => void): () => void {
  const entry = (): void => clear();
  if (!listening() && !cleaning) listen(true);
  drawnLines.add(entry);
  return () => {
    if (drawnLines.delete(entry) && !listening() && !cleaning) listen(false);
  };
}

/**
 * For a command that handles SIGINT and SIGTERM itself: `onFirst` gets the first of either kind,
 * and from then on neither is listened to, so a second signal ends the process at once whatever
 * the kinds (SIGINT then SIGTERM too: an SRE's `kill` after a Ctrl-C that seems stuck). Returns
 * the function that stops listening (once the command's own work is done).
 */
export function onFirstInterrupt(onFirst: (signal: InterruptSignal) => void): () => void {
  const off = (): void => {
    for (const signal of SIGNALS) process.off(signal, handlers[signal]);
  };
  const first = (signal: InterruptSignal) => (): void => {
    off();
    onFirst(signal);
  };
  const handlers = { SIGINT: first("SIGINT"), SIGTERM: first("SIGTERM") };
  for (const signal of SIGNALS) process.on(signal, handlers[signal]);
  return off;
}

/** True once a signal started the cleanups: the process exits with 130/143 when they end. */
export function interruptInProgress(): boolean {
  return cleaning !== undefined;
}

export interface PointOfNoReturn {
  /**
   * Runs `steps`, which call `passed()` right after their point of no return (a rename into
   * place, a journal written). From then on an interrupt waits for the steps to end and reports
   * `the <work> had passed its point of no return (<point>) and finished it: <now>` (or `could not
   * finish`, and why), instead of undoing. Never settles when an interrupt is already undoing, or
   * when the steps fail while one waits for them.
   */
  cross<T>(
    point: string,
    steps: (passed: () => void) => Promise<T>,
    now: string,
    note?: (value: T) => string | undefined,
  ): Promise<T>;
  /** Whether the steps have passed their point of no return. */
  readonly passed: boolean;
  release(): Promise<void>;
}

/**
 * A cleanup for `work` that can be undone (`undo`, reported as "removed <what>") until a point of
 * no return, and must be finished after it: past that point the old state is gone (the new keys
 * alone open a rekeyed archive), so undoing is impossible and stopping would leave what remains
 * (a sidecar, the records) undone, while finishing is a few small writes.
 */
export function cleanupUntilNoReturn(
  work: string,
  what: string,
  undo: () => Promise<CleanupOutcome> | CleanupOutcome,
): PointOfNoReturn {
  let passed = false;
  let crossing: { done: Promise<unknown>; report: (o: PromiseSettledResult<unknown>) => string } | undefined;
  const cleanup = cleanupOnInterrupt(what, async () => {
    const outcome = crossing && (await Promise.allSettled([crossing.done]))[0]!;
    if (outcome && passed) return crossing!.report(outcome);
    return undo();
  });
  return {
    get passed() {
      return passed;
    },
    cross(point, steps, now, note) {
      if (interruptInProgress()) return new Promise<never>(() => {});
      const done = steps(() => {
        passed = true;
      });
      crossing = {
        done,
        report: (o) => {
          const line = `the ${work} had passed its point of no return (${point}) and `;
          if (o.status === "rejected")
            return `${line}could not finish: ${now}; ${(o.reason as Error)?.message ?? String(o.reason)}`;
          const extra = note?.(o.value as Parameters<NonNullable<typeof note>>[0]);
          return `${line}finished it: ${now}${extra ? `; ${extra}` : ""}`;
        },
      };
      // The interrupt's cleanup reports a failure it waited for, and exits: no second line.
      return done.catch((err: unknown) => {
        if (interruptInProgress()) return new Promise<never>(() => {});
        throw err;
      });
    },
    release: () => cleanup.release(),
  };
}
