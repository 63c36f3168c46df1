/**
 * The parsers of numeric flags (`--retries 3`, `--keep-last 7`, `--timeout 1.5`), as commander
 * argParsers. A bad value is a usage error that commander reports like any other
 * (usage-error.ts): one line, `--flag VALUE: must be ...; see 'bernstein ... --help'`, exit 2.
 */
import { InvalidArgumentError } from "../vendor/commander.js";
import { parseDuration } from "../storage/schedule.js";
import { MAX_DELAY_S } from "../workspace/timer.js";

/** A whole number from `min` to `max` (default: the largest safe integer, which a number holds exactly). */
export function intOption(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || n < min) {
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    }
    if (n > max) throw tooLarge(name, max);
    return n;
  };
}

/** A number above 0 (`positive`) or at least 0, and at most `max`. */
function numberOption(
  name: string,
  range: "positive" | "non-negative",
  max = Number.MAX_SAFE_INTEGER,
): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    const ok = value.trim() !== "" && !Number.isNaN(n) && (range === "positive" ? n > 0 : n >= 0);
    if (!ok)
      throw new InvalidArgumentError(`${name} must be a number ${range === "positive" ? ">" : ">="} 0`);
    if (n > max) throw tooLarge(name, max);
    return n;
  };
}

/** A delay in seconds (a task's timeout, stop's wait): at most MAX_DELAY_S (timer.ts), so that it can be waited. */
export function secondsOption(name: string, range: "positive" | "non-negative"): (value: string) => number {
  return numberOption(name, range, MAX_DELAY_S);
}

function tooLarge(name: string, max: number): InvalidArgumentError {
  return new InvalidArgumentError(`${name} too large: must be at most ${max}`);
}

/** A duration such as 90s, 36h, 7d or 1h30m, in milliseconds. */
export function durationOption(name: string): (value: string) => number {
  return (value: string): number => {
    try {
      return parseDuration(value);
    } catch {
      throw new InvalidArgumentError(`${name} must be a duration such as 90s, 36h, 7d or 1h30m`);
    }
  };
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/** A byte count: 8388608, 512KiB, 8MiB, 1GiB (binary units). */
export function sizeOption(name: string, min = 1): (value: string) => number {
  return (value: string): number => {
    const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(value);
    const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
    const n = m && unit ? Number(m[1]) * unit : NaN;
    if (!Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be a size such as 512KiB or 8MiB (at least ${min} bytes)`);
    return n;
  };
}
