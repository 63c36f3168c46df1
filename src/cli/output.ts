/**
 * Command output: one JSON document with --json, human lines otherwise; --quiet keeps only errors.
 */
import type { Command } from "../vendor/commander.js";
import { resolveSddDir } from "../workspace/layout.js";

export interface GlobalOptions {
  sdd: string;
  json: boolean;
  quiet: boolean;
}

export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as { sdd?: string; json?: boolean; quiet?: boolean };
  return { sdd: resolveSddDir(o.sdd), json: Boolean(o.json), quiet: Boolean(o.quiet) };
}

let stdoutGone = false;
let outputFailure: NodeJS.ErrnoException | undefined;

/** Whether stdout can no longer be written (its reader went away, or the write failed). */
export function stdoutClosed(): boolean {
  return stdoutGone;
}

/** A failure to write stdout other than a reader that stopped early (e.g. a full disk). */
export function stdoutFailure(): NodeJS.ErrnoException | undefined {
  return outputFailure;
}

/**
 * A reader that stops early (`| head`, `| grep -q`) closes the pipe, and every later write fails
 * with EPIPE (Node ignores SIGPIPE, so without a listener that is an uncaught error with a stack).
 * It is not a failure of the command: output stops, the command finishes what it was doing (a
 * backup or restore is never cut half-way by it) and exits with its own code, 0 on success.
 * stderr gets the same treatment (`2>&1 | head`). Idempotent.
 */
export function tolerateClosedOutput(): void {
  if (process.stdout.listenerCount("error") > 0) return;
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    stdoutGone = true;
    if (err.code !== "EPIPE") outputFailure ??= err;
  });
  process.stderr.on("error", () => {
    // Nowhere left to say anything; the exit code still tells.
  });
}

/** Resolves once what was written to stdout has been handed over (or failed to be). */
export function stdoutFlushed(): Promise<void> {
  if (stdoutGone || process.stdout.destroyed) return Promise.resolve();
  return new Promise((resolve) => process.stdout.write("", () => resolve()));
}

export class Output {
  constructor(readonly opts: { json: boolean; quiet: boolean }) {}
  static of(cmd: Command): Output {
    return new Output(globalsOf(cmd));
  }
  get isTTY(): boolean {
    return Boolean(process.stdout.isTTY) && !this.opts.json && !this.opts.quiet;
  }
  /** Human line to stdout (suppressed by --json and --quiet). */
  line(text = ""): void {
    if (!this.opts.json && !this.opts.quiet && !stdoutGone) process.stdout.write(text + "\n");
  }
  /** Warning to stderr (suppressed by --quiet). */
  warn(text: string): void {
    if (!this.opts.quiet) process.stderr.write(`warning: ${text}\n`);
  }
  /**
   * The command ran and found a problem: sets the exit code. Under --quiet nothing else is
   * printed, so the one-line summary goes to stderr (a bare non-zero exit explains nothing).
   */
  failed(exitCode: number, summary: string): void {
    process.exitCode = exitCode;
    if (this.opts.quiet) process.stderr.write(`bernstein: ${summary}\n`);
  }
  /** The final result: JSON document with --json, otherwise the human rendering. */
  result(json: unknown, human?: () => void): void {
    if (this.opts.json) {
      process.stdout.write(JSON.stringify(json, jsonReplacer, 2) + "\n");
    } else if (!this.opts.quiet && human) {
      human();
    }
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}
