/**
 * What every bench reports the same way: whole-process cost of a command (wall, CPU, peak RSS,
 * read through bench/support/rusage.py since Node cannot read a child's rusage), medians, and
 * goals as `{ours, baseline, ratio, target, met}` that `npm run bench -- --json` collects.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The Python scripts live beside the sources, not in dist/. */
export const SUPPORT_SOURCES = path.resolve(here, "../../../bench/support");

export interface ProcessCost {
  wall_s: number;
  user_s: number;
  sys_s: number;
  /** user + sys of the whole process, its threads and children included. */
  cpu_s: number;
  peak_rss_mb: number;
  /** The command's stdout. */
  stdout: string;
}

/** Runs `argv` to the end and returns its whole-process cost; throws when it fails. */
export function measureProcess(
  argv: string[],
  okCodes: number[] = [0],
  env: NodeJS.ProcessEnv = process.env,
): ProcessCost {
  const r = spawnSync("python3", [path.join(SUPPORT_SOURCES, "rusage.py"), ...argv], {
    encoding: "utf8",
    maxBuffer: 16 << 20,
    env,
  });
  const line = r.stderr.split("\n").find((l) => l.startsWith("RUSAGE "));
  if (!line) throw new Error(`bench: ${argv.join(" ")} could not be measured: ${r.stderr || r.error}`);
  const cost = JSON.parse(line.slice("RUSAGE ".length)) as Omit<ProcessCost, "stdout"> & { exit: number };
  if (!okCodes.includes(cost.exit))
    throw new Error(`bench: ${argv.join(" ")} exited ${cost.exit}: ${r.stderr}`);
  return { ...cost, stdout: r.stdout };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** The median wall, CPU and the worst peak RSS of several runs of one thing. */
export function summarize(runs: ProcessCost[]): { wall_s: number; cpu_s: number; peak_rss_mb: number } {
  return {
    wall_s: round(median(runs.map((r) => r.wall_s)), 3),
    cpu_s: round(median(runs.map((r) => r.cpu_s)), 3),
    peak_rss_mb: round(Math.max(...runs.map((r) => r.peak_rss_mb)), 1),
  };
}

export interface Goal {
  name: string;
  /** What the ratio compares, e.g. "cpu_s", "appends_per_s". */
  unit: string;
  ours: number;
  baseline: number | null;
  baseline_is: string;
  ratio: number | null;
  /** "ratio <= 1.3", "ours >= 100", ... */
  target: string;
  met: boolean;
}

export function ratioGoal(
  name: string,
  unit: string,
  ours: number,
  baseline: number,
  baselineIs: string,
  bound: { max?: number; min?: number },
): Goal {
  const ratio = ours / baseline;
  const met =
    (bound.max === undefined || ratio <= bound.max) && (bound.min === undefined || ratio >= bound.min);
  const target = bound.max !== undefined ? `ratio <= ${bound.max}` : `ratio >= ${bound.min}`;
  return {
    name,
    unit,
    ours: round(ours, 3),
    baseline: round(baseline, 3),
    baseline_is: baselineIs,
    ratio: round(ratio, 3),
    target,
    met,
  };
}

export function absoluteGoal(
  name: string,
  unit: string,
  ours: number,
  bound: { max?: number; min?: number },
): Goal {
  const met = (bound.max === undefined || ours < bound.max) && (bound.min === undefined || ours >= bound.min);
  const target = bound.max !== undefined ? `ours < ${bound.max}` : `ours >= ${bound.min}`;
  return { name, unit, ours: round(ours, 3), baseline: null, baseline_is: "none", ratio: null, target, met };
}
