/**
 * Follower health as the leader sees it. Lag is counted in entries (leader's durable tail minus
 * what the follower acknowledged, summed over runs) and in seconds (age of the oldest entry the
 * follower lacks, from that entry's own `timestamp`: the data-time a failover to it would lose).
 */

export type HealthState = "HEALTHY" | "LAGGING" | "UNREACHABLE" | "UNKNOWN";

export interface HealthThresholds {
  /** A follower further behind than this many entries is LAGGING (default 100). */
  maxLagEntries: number;
  /** After this many consecutive failed contacts a follower is UNREACHABLE (default 3). */
  maxRetries: number;
}

export const DEFAULT_THRESHOLDS: HealthThresholds = { maxLagEntries: 100, maxRetries: 3 };

export interface FollowerRecord {
  name: string;
  /** The follower's own status endpoint, when configured; probed by the leader. */
  url?: string;
  /** Highest durable seq per run the follower acknowledged (in epoch `ackEpoch`). */
  acked: Map<string, number>;
  /** The epoch of the follower's newest acknowledgement; null before the first. */
  ackEpoch: number | null;
  lastAckAt: number | null;
  lastContactAt: number | null;
  consecutiveFailures: number;
  lastError: string | null;
  /** The epoch the follower last reported. */
  epoch: number | null;
  /** An integrity error the follower reported. */
  integrityError: string | null;
}

export function newFollowerRecord(name: string, url?: string): FollowerRecord {
  return {
    name,
    url,
    acked: new Map(),
    ackEpoch: null,
    lastAckAt: null,
    lastContactAt: null,
    consecutiveFailures: 0,
    lastError: null,
    epoch: null,
    integrityError: null,
  };
}

/** Entries the follower lacks: Σ over runs of (leader tail − acknowledged). */
export function lagEntries(tails: Map<string, number>, acked: Map<string, number>): number {
  let lag = 0;
  for (const [run, tail] of tails) {
    const a = acked.get(run) ?? -1;
    if (tail > a) lag += tail - a;
  }
  return lag;
}

/** The first entry the follower lacks in each run where it lags. */
export function firstMissing(
  tails: Map<string, number>,
  acked: Map<string, number>,
): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [run, tail] of tails) {
    const a = acked.get(run) ?? -1;
    if (tail > a) out.push([run, a + 1]);
  }
  return out;
}

export function classify(f: FollowerRecord, lag: number, t: HealthThresholds): HealthState {
  if (f.consecutiveFailures >= t.maxRetries) return "UNREACHABLE";
  if (f.lastContactAt === null && f.lastAckAt === null) return "UNKNOWN";
  if (f.integrityError) return "LAGGING";
  if (lag > t.maxLagEntries) return "LAGGING";
  return "HEALTHY";
}

export interface FollowerView {
  name: string;
  url: string | null;
  health: HealthState;
  lag_entries: number;
  lag_seconds: number | null;
  last_ack_at: string | null;
  last_contact_at: string | null;
  consecutive_failures: number;
  last_error: string | null;
  epoch: number | null;
  integrity_error: string | null;
  acked: Record<string, number>;
}

export function viewOf(
  f: FollowerRecord,
  tails: Map<string, number>,
  t: HealthThresholds,
  lagSecondsValue: number | null,
): FollowerView {
  const lag = lagEntries(tails, f.acked);
  return {
    name: f.name,
    url: f.url ?? null,
    health: classify(f, lag, t),
    lag_entries: lag,
    lag_seconds: lag === 0 ? 0 : lagSecondsValue,
    last_ack_at: f.lastAckAt === null ? null : new Date(f.lastAckAt).toISOString(),
    last_contact_at: f.lastContactAt === null ? null : new Date(f.lastContactAt).toISOString(),
    consecutive_failures: f.consecutiveFailures,
    last_error: f.lastError,
    epoch: f.epoch,
    integrity_error: f.integrityError,
    acked: Object.fromEntries(f.acked),
  };
}
