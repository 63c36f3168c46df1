/**
 * The S3 settings the environment gives (BERNSTEIN_S3_*). Each value is checked where it is read:
 * one that is not what its variable accepts is a usage error naming the variable, raised when
 * the store is opened, before any request. A silent default would hide the typo, and `Number()`
 * of it is NaN, which compares false with everything and so switches a limit off.
 */
import { ExitCode, UserError } from "../errors/errors.js";

export const ENDPOINT_ENV = "BERNSTEIN_S3_ENDPOINT";
export const CONCURRENCY_ENV = "BERNSTEIN_S3_CONCURRENCY";
export const BACKOFF_ENV = "BERNSTEIN_S3_BACKOFF_MS";

/**
 * A whole number from `min` to `max` from the variable `name`; undefined when it is unset or empty.
 * The words are those of the numeric flags (cli/number-option.ts), so that a variable and a flag
 * refuse alike.
 */
export function intFromEnv(
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  env: NodeJS.ProcessEnv = process.env,
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min)
    throw new UserError(`${name}=${raw}: must be an integer >= ${min}`, ExitCode.USAGE);
  if (n > max) throw new UserError(`${name}=${raw}: too large: must be at most ${max}`, ExitCode.USAGE);
  return n;
}
