/**
 * Command output: one JSON document with --json, human lines otherwise; --quiet keeps only errors.
 */
import type { Command } from "commander";
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
    if (!this.opts.json && !this.opts.quiet) process.stdout.write(text + "\n");
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
