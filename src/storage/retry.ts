/**
 * Retries of transient remote failures: exponential backoff with full jitter, bounded by a
 * number of retries. Only failures that a later attempt can fix are retried: HTTP 5xx,
 * throttling (429, SlowDown, Throttling*), request timeouts and connection resets.
 * Everything else (no such bucket, access denied, no credentials found, bad request) fails at once.
 */
import { BACKOFF_ENV, intFromEnv } from "./s3-env.js";
import type { RetryInfo } from "./store.js";
import { setLongTimeout } from "../workspace/timer.js";

export interface RetryPolicy {
  /** Retries after the first attempt (so at most retries + 1 attempts). */
  retries: number;
  /** First backoff ceiling in ms; doubles per retry. */
  baseDelayMs: number;
  /** Largest backoff ceiling in ms. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 3, baseDelayMs: 250, maxDelayMs: 10_000 };

/** The policy from `--retries` plus the environment (BERNSTEIN_S3_BACKOFF_MS shortens waits in tests). */
export function retryPolicy(retries?: number): RetryPolicy {
  const base = intFromEnv(BACKOFF_ENV, 0);
  return {
    ...DEFAULT_RETRY_POLICY,
    retries: retries ?? DEFAULT_RETRY_POLICY.retries,
    ...(base !== undefined ? { baseDelayMs: base, maxDelayMs: Math.max(base * 16, 1) } : {}),
  };
}

const THROTTLING_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
]);

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTCONN",
  "ECONNABORTED",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
]);

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

export function httpStatusOf(err: unknown): number | undefined {
  const e = err as AwsLikeError | undefined;
  return e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
}

/**
 * The SDK's credential chain found nothing: it raises this once it has asked every source, so
 * asking again finds the same nothing. A setup to fix, not an outage.
 */
export function isMissingCredentials(err: unknown): boolean {
  const e = err as AwsLikeError | undefined;
  return e?.name === "CredentialsProviderError" || /Could not load credentials/i.test(e?.message ?? "");
}

/** True for failures a later attempt can fix. */
export function isTransient(err: unknown): boolean {
  const e = err as AwsLikeError | undefined;
  if (!e) return false;
  // Whatever a credential source met on the way (an instance metadata timeout) is not the failure.
  if (isMissingCredentials(e)) return false;
  const status = httpStatusOf(e);
  // 501: the store lacks the feature; asking again cannot help (a caller may choose another way).
  if (status === 501 || e.name === "NotImplemented") return false;
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (e.name && THROTTLING_NAMES.has(e.name)) return true;
  if (e.code && TRANSIENT_CODES.has(e.code)) return true;
  if (/socket hang up|ECONNRESET|EPIPE|other side closed/i.test(e.message ?? "")) return true;
  if (e.cause && e.cause !== err) return isTransient(e.cause);
  return false;
}

/** One line describing an SDK or socket error. */
export function describeError(err: unknown): string {
  const e = err as AwsLikeError | undefined;
  const status = httpStatusOf(e);
  const name = e?.name && e.name !== "Error" ? e.name : (e?.code ?? "");
  const msg = (e?.message ?? String(err)).split("\n")[0];
  return [status ? `HTTP ${status}` : "", name, msg && msg !== name ? msg : ""].filter(Boolean).join(" ");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setLongTimeout(resolve, ms));
}

/** Full jitter: a uniform delay in [0, min(max, base * 2^retry)]. */
export function backoffDelay(policy: RetryPolicy, retry: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(Math.random() * ceiling);
}

export class RetriesExhausted extends Error {
  constructor(
    readonly operation: string,
    readonly attempts: number,
    readonly lastError: unknown,
  ) {
    // The operation is kept as a field: callers put their own context in front of the message.
    super(`${describeError(lastError)} (gave up after ${attempts} attempt${attempts === 1 ? "" : "s"})`);
    this.name = "RetriesExhausted";
  }
}

/**
 * Runs `fn` until it succeeds, a non-transient error occurs (rethrown as is), or the retries
 * are used up (RetriesExhausted). `counter.retries` is incremented per retry.
 */
export async function withRetry<T>(
  operation: string,
  policy: RetryPolicy,
  fn: () => Promise<T>,
  hooks: { onRetry?: (info: RetryInfo) => void; counter?: { retries: number } } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err)) throw err;
      if (attempt >= policy.retries) throw new RetriesExhausted(operation, attempt + 1, err);
      const delayMs = backoffDelay(policy, attempt);
      if (hooks.counter) hooks.counter.retries++;
      hooks.onRetry?.({ operation, attempt: attempt + 1, delayMs, error: describeError(err) });
      await sleep(delayMs);
    }
  }
}
