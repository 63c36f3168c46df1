/**
 * What a leader tells about itself: the `GET /status` document, the RPO estimate it carries, and
 * the Prometheus text of `GET /metrics`.
 */
import { entriesAfterBackup, type BackupInfo } from "./backup-info.js";
import type { AckPolicyName, OnAckTimeout } from "./ack-policy.js";
import type { FollowerView } from "./health.js";
import { MetricsText } from "./metrics.js";

export interface LeaderStatus {
  role: "leader";
  url: string;
  epoch: number;
  fenced: boolean;
  fenced_reason: string | null;
  policy: AckPolicyName;
  required_acks: number;
  on_ack_timeout: OnAckTimeout;
  ack_timeout_ms: number;
  policy_state: string;
  policy_reason: string | null;
  wal: {
    runs: Array<{ run_id: string; last_seq: number; last_hash: string | null }>;
    position: { run_id: string; seq: number } | null;
  };
  followers: FollowerView[];
  last_backup: BackupInfo | null;
  rpo_estimate: { entries: number | null; seconds: number | null; basis: string };
}

/** Decisions acknowledged, timed out and refused under the policy (AckPolicy.counters). */
export interface PolicyCounters {
  acknowledged: number;
  timeouts: number;
  rejected: number;
}

/** The Prometheus text of a leader's `GET /metrics`. */
export function leaderMetrics(st: LeaderStatus, counters: PolicyCounters): string {
  const m = new MetricsText();
  m.add("bernstein_replication_epoch", "gauge", "Replication epoch of this node", st.epoch);
  m.add(
    "bernstein_replication_fenced",
    "gauge",
    "1 when a newer epoch exists and this leader refuses decisions",
    st.fenced ? 1 : 0,
  );
  m.add(
    "bernstein_replication_halted",
    "gauge",
    "1 when the ack policy was not met and decisions are stopped",
    st.policy_state === "HALTED" ? 1 : 0,
  );
  m.add(
    "bernstein_replication_degraded",
    "gauge",
    "1 when running as LEADER_ONLY after an ack timeout (--on-ack-timeout degrade)",
    st.policy_state === "DEGRADED" ? 1 : 0,
  );
  m.add(
    "bernstein_replication_required_acks",
    "gauge",
    "Follower acknowledgements a decision needs",
    st.required_acks,
    { policy: st.policy },
  );
  for (const r of st.wal.runs)
    m.add("bernstein_replication_wal_tail_seq", "gauge", "Durable WAL tail seq per run", r.last_seq, {
      run: r.run_id,
    });
  addFollowerMetrics(m, st.followers);
  m.add(
    "bernstein_replication_last_backup_age_seconds",
    "gauge",
    "Age of the last good backup",
    st.last_backup?.age_seconds ?? null,
  );
  m.add(
    "bernstein_replication_commits_acknowledged_total",
    "counter",
    "Decisions acknowledged under the policy",
    counters.acknowledged,
  );
  m.add("bernstein_replication_ack_timeouts_total", "counter", "Acknowledgement timeouts", counters.timeouts);
  m.add(
    "bernstein_replication_commits_rejected_total",
    "counter",
    "Decisions refused (halted or fenced)",
    counters.rejected,
  );
  return m.toString();
}

/** Lag, health and last acknowledgement of every follower. */
function addFollowerMetrics(m: MetricsText, followers: FollowerView[]): void {
  for (const f of followers) {
    m.add(
      "bernstein_replication_follower_lag_entries",
      "gauge",
      "Entries the follower has not acknowledged",
      f.lag_entries,
      { follower: f.name },
    );
    m.add(
      "bernstein_replication_follower_lag_seconds",
      "gauge",
      "Age of the oldest entry the follower has not acknowledged",
      f.lag_seconds,
      { follower: f.name },
    );
    for (const s of ["HEALTHY", "LAGGING", "UNREACHABLE", "UNKNOWN"]) {
      m.add(
        "bernstein_replication_follower_health",
        "gauge",
        "Follower health (1 for its current state)",
        f.health === s ? 1 : 0,
        { follower: f.name, state: s },
      );
    }
    m.add(
      "bernstein_replication_follower_last_ack_timestamp_seconds",
      "gauge",
      "Unix time of the follower's last acknowledgement",
      f.last_ack_at === null ? null : Date.parse(f.last_ack_at) / 1000,
      { follower: f.name },
    );
  }
}

/**
 * What a failover would lose now: the best-placed follower's lag when one is reachable, else
 * everything since the last backup.
 */
export function rpoEstimate(
  followers: FollowerView[],
  backup: BackupInfo | null,
  runs: ReadonlyArray<{ run_id: string; last_seq: number }>,
): { entries: number | null; seconds: number | null; basis: string } {
  const usable = followers.filter(
    (f) => f.health !== "UNREACHABLE" && f.health !== "UNKNOWN" && !f.integrity_error,
  );
  if (usable.length > 0) {
    const best = usable.reduce((a, b) => (b.lag_entries < a.lag_entries ? b : a));
    return { entries: best.lag_entries, seconds: best.lag_seconds, basis: `follower ${best.name}` };
  }
  if (backup)
    return { entries: entriesAfterBackup(backup, runs), seconds: backup.age_seconds, basis: "last backup" };
  return { entries: null, seconds: null, basis: "no follower and no backup: everything" };
}
