/**
 * A progress bar on stderr for work that takes a while (dr backup, restore, verify), drawn by
 * cli-progress, only when stderr is a terminal and the command prints for people (no --json,
 * no --quiet): scripts, pipes and logs get nothing extra.
 */
import { createRequire } from "node:module";
import type CliProgress from "cli-progress";
import { clearOnInterrupt, interruptInProgress } from "../workspace/interrupt.js";
import type { Output } from "./output.js";

export interface Progress {
  /** Whether a bar is drawn at all (a terminal, output for people): else updates cost nothing. */
  readonly drawn: boolean;
  /** `done` of `total` bytes in the phase `label` (total 0: not known, bytes only). */
  update(label: string, done: number, total: number): void;
  /** Removes the bar (call before printing the result, also on failure). */
  stop(): void;
  /** Waits for `work` and removes the bar when it ends, however it ends. */
  during<T>(work: Promise<T>): Promise<T>;
}

const MIB = 1024 * 1024;
const WIDTH = 30;
const NONE: Progress = { drawn: false, update: () => {}, stop: () => {}, during: (work) => work };

// Loaded with the first bar: a command run by a script, a pipe or --json never draws one, and
// would otherwise pay for loading the library (and its dependencies) at every start.
const loadCliProgress = (): typeof CliProgress =>
  createRequire(import.meta.url)("cli-progress") as typeof CliProgress;

const mib = (n: number): string => (n / MIB).toFixed(n < 10 * MIB ? 1 : 0);

function render(label: string, done: number, total: number, eta: number): string {
  if (total <= 0) return `  ${label} ${mib(done)} MiB`;
  const part = Math.min(1, done / total);
  const filled = Math.round(part * WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(WIDTH - filled);
  const left = Number.isFinite(eta) && eta > 0 && part < 1 ? ` | ${eta} s left` : "";
  return `  ${label} [${bar}] ${Math.floor(part * 100)}% | ${mib(done)}/${mib(total)} MiB${left}`;
}

export function progressFor(out: Output): Progress {
  if (out.opts.json || out.opts.quiet || !process.stderr.isTTY) return NONE;
  let bar: CliProgress.SingleBar | undefined;
  let phase = "";
  let drawnUntil: (() => void) | undefined;
  // Ctrl-C: the bar is cleared before the interrupt's line is printed (not glued to its end).
  const clear = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    drawn: true,
    update(label, done, total) {
      // The interrupted work goes on while its cleanup runs: it must not draw the bar again.
      if (interruptInProgress()) return;
      if (!bar) {
        drawnUntil ??= clearOnInterrupt(clear);
        bar = new (loadCliProgress().SingleBar)({
          stream: process.stderr,
          // The terminal's settings are left alone (cursor shown, lines wrap; the bar is clipped
          // to the width instead): an interrupted command must not leave them changed.
          hideCursor: false,
          linewrap: true,
          clearOnComplete: true,
          format: (_opts, params, payload: { label: string; total: number }) =>
            render(payload.label, params.value, payload.total, params.eta),
        });
        bar.start(Math.max(total, 1), done, { label, total });
        phase = label;
        return;
      }
      if (label !== phase) {
        // Redraws are throttled: the phase that ended is drawn at its last value before the next
        // one starts from zero (a fresh estimate).
        bar.render();
        phase = label;
        bar.start(Math.max(total, 1), done, { label, total });
        return;
      }
      bar.update(done, { label, total });
    },
    stop() {
      clear();
      drawnUntil?.();
      drawnUntil = undefined;
    },
    async during(work) {
      try {
        return await work;
      } finally {
        this.stop();
      }
    },
  };
}
