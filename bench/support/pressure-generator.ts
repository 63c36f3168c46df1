/**
 * Runs bench/support/io-pressure.ts in a process of its own, paused (SIGSTOP) except while a
 * bench measures something beside it, so that the quiet rows of the same run see none of it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), "io-pressure.js");

/** `--io-pressure MB` or `MB:fsync` (see io-pressure.ts); undefined when not given. */
export interface PressureSpec {
  mb: number;
  fsync: boolean;
}

export function parsePressure(arg: string | undefined): PressureSpec | undefined {
  if (arg === undefined) return undefined;
  const m = /^(\d+)(:fsync)?$/.exec(arg);
  if (!m || Number(m[1]) <= 0) throw new Error(`--io-pressure ${arg}: expected MB or MB:fsync`);
  return { mb: Number(m[1]), fsync: m[2] !== undefined };
}

/** The page cache waiting to be written and being written, system-wide (/proc/meminfo), in MB. */
export function dirtyMb(): number {
  const info = readFileSync("/proc/meminfo", "utf8");
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return Math.round((kb("Dirty") + kb("Writeback")) / 1024);
}

export class PressureGenerator {
  private readonly child: ChildProcess;
  /** When the newest pass reported started (Date.now() of the generator). */
  private lastPassStart = 0;
  private waiter?: () => void;

  private constructor(dir: string, spec: PressureSpec) {
    this.child = spawn(process.execPath, [script, dir, String(spec.mb), ...(spec.fsync ? ["fsync"] : [])], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      for (const m of text.matchAll(/^pass (\d+)$/gm))
        this.lastPassStart = Math.max(this.lastPassStart, Number(m[1]));
      const w = this.waiter;
      this.waiter = undefined;
      w?.();
    });
    this.child.on("exit", () => this.waiter?.());
  }

  /** Starts the generator in `dir` and pauses it after its first pass. */
  static async start(dir: string, spec: PressureSpec): Promise<PressureGenerator> {
    const g = new PressureGenerator(dir, spec);
    await g.passStartedAfter(0);
    g.pause();
    return g;
  }

  /**
   * Waits for a pass that started after `t`. Reports of earlier passes may arrive first: the
   * bench's measurements block the event loop, so they queue up while it is paused.
   */
  private async passStartedAfter(t: number): Promise<void> {
    while (this.lastPassStart < t || this.lastPassStart === 0) {
      if (this.child.exitCode !== null) throw new Error(`io-pressure exited ${this.child.exitCode}`);
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  /** Resumes the generator and waits until it has written a whole pass again. */
  async resume(): Promise<void> {
    const t = Date.now();
    this.child.kill("SIGCONT");
    await this.passStartedAfter(t);
  }

  pause(): void {
    this.child.kill("SIGSTOP");
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGCONT");
    this.child.kill("SIGTERM");
    await exited;
  }
}
