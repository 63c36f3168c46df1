/**
 * The parsers of numeric flags (`--retries 3`, `--keep-last 7`, `--timeout 1.5`), as commander
 * argParsers. A bad value is a usage error that commander reports like any other
 * (usage-error.ts): one line, `--flag VALUE: must be ...; see 'bernstein ... --help'`, exit 2.
 */
import { InvalidArgumentError } from "commander";

/** A whole number of at least `min`. */
export function intOption(name: string, min = 0): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    }
    return n;
  };
}

/** A finite number above 0 (`positive`) or at least 0. */
export function numberOption(name: string, range: "positive" | "non-negative"): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    const ok = value.trim() !== "" && Number.isFinite(n) && (range === "positive" ? n > 0 : n >= 0);
    if (!ok)
      throw new InvalidArgumentError(`${name} must be a number ${range === "positive" ? ">" : ">="} 0`);
    return n;
  };
}
