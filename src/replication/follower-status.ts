/**
 * What a follower tells about itself: its and its leader's node states, the failover evaluation
 * from its point of view (with the runbook it writes when a failover becomes recommended), the
 * `GET /status` document and the Prometheus text of `GET /metrics`.
 */
import type { Workspace } from "../workspace/layout.js";
import { ACK_POLICIES, type AckPolicyName } from "./ack-policy.js";
import { lastBackupInfo } from "./backup-info.js";
import {
  evaluateFailover,
  type FailoverEvaluation,
  type NodeState,
  leaderStopReason,
  writeRunbook,
} from "./failover.js";
import type { HealthThresholds } from "./health.js";
import { MetricsText } from "./metrics.js";
import type { RoleState } from "../workspace/replication-role.js";
import type { WalPuller } from "./follower-pull.js";

export type FollowerState =
  | "BOOTSTRAPPING"
  | "FOLLOWING"
  | "STOPPED_INTEGRITY"
  | "REFUSED_EPOCH"
  | "LEADER_UNREACHABLE"
  | "LEADER_STOPPED"
  | "STOPPED";

/** A follower as its status sees it, read at the moment of the call. */
export interface FollowerView {
  ws: Workspace;
  region: string;
  url: string | null;
  leaderUrl: string;
  epoch: number;
  state: FollowerState;
  role: RoleState;
  leaderEpoch: number | null;
  leaderFailures: number;
  lastContactAt: number | null;
  lastError: string | null;
  thresholds: HealthThresholds;
  pull: WalPuller;
  lastRunbook: string | null;
  counters: { entries_applied: number; batches_applied: number; acks_sent: number };
}

function leaderHealth(v: FollowerView): NodeState["health"] {
  if (v.leaderFailures > 0 && v.pull.leaderStop()) return "STOPPED";
  if (v.leaderFailures >= v.thresholds.maxRetries) return "UNREACHABLE";
  return v.lastContactAt ? "HEALTHY" : "UNKNOWN";
}

/** The leader as this follower sees it, and this follower. */
export function followerNodeStates(v: FollowerView): NodeState[] {
  const lag = v.pull.lagEntries();
  const integrity = v.role.integrity_error;
  const stop = v.pull.leaderStop();
  return [
    {
      name: "leader",
      role: "leader",
      url: v.leaderUrl,
      epoch: v.leaderEpoch,
      wal_position: stop ? { run_id: stop.run_id, seq: stop.seq } : null,
      health: leaderHealth(v),
      lag_entries: 0,
      lag_seconds: 0,
      note: stop ? `stopped cleanly at ${stop.at}` : undefined,
    },
    {
      name: v.region,
      role: "follower",
      url: v.url,
      sdd: v.ws.root,
      epoch: v.epoch,
      wal_position: v.pull.position(),
      health: integrity ? "LAGGING" : lag > v.thresholds.maxLagEntries ? "LAGGING" : "HEALTHY",
      lag_entries: lag,
      lag_seconds: v.pull.lagSeconds(),
      note: integrity ? `integrity error: ${integrity}` : undefined,
    },
  ];
}

/** The leader's policy as this follower last learned it (null before its first contact). */
function leaderPolicy(v: FollowerView): AckPolicyName | null {
  const p = v.role.cluster?.policy;
  return p && (ACK_POLICIES as readonly string[]).includes(p) ? (p as AckPolicyName) : null;
}

/** The failover evaluation from this follower's point of view. */
export function evaluateAsFollower(v: FollowerView): FailoverEvaluation {
  return evaluateFailover({
    perspective: "follower",
    policy: leaderPolicy(v),
    thresholds: v.thresholds,
    leaderFailures: v.leaderFailures,
    leaderStopped: v.pull.leaderStop(),
    leaderNeverReached: v.lastContactAt === null,
    nodes: followerNodeStates(v),
    integrityErrors: v.role.integrity_error ? [v.role.integrity_error] : [],
  });
}

/** Evaluates failover after every round; writes a runbook when the decision turns to FAILOVER_RECOMMENDED. */
export class FailoverWatch {
  private lastDecision: FailoverEvaluation["decision"] = "NO_ACTION";
  /** The clean stop (run:seq) last told in the log, so it is told once per stop. */
  private toldStop: string | null = null;
  lastRunbook: string | null = null;

  constructor(private readonly o: { tokenFile?: string; log: (line: string) => void }) {}

  async evaluate(v: FollowerView): Promise<FailoverEvaluation> {
    const ev = evaluateAsFollower(v);
    if (ev.decision === "FAILOVER_RECOMMENDED" && this.lastDecision !== "FAILOVER_RECOMMENDED") {
      try {
        this.lastRunbook = await writeRunbook(v.ws, {
          perspective: "follower",
          policy: leaderPolicy(v),
          thresholds: v.thresholds,
          leaderFailures: v.leaderFailures,
          nodes: followerNodeStates(v),
          lastBackup: await lastBackupInfo(v.ws),
          evaluation: ev,
          writtenBy: `follower ${v.region}`,
          tokenFile: this.o.tokenFile,
        });
        this.o.log(
          `replicate follow: FAILOVER_RECOMMENDED: ${ev.reasons.join("; ")}; runbook: ${this.lastRunbook}`,
        );
      } catch (err) {
        this.o.log(`replicate follow: could not write the runbook: ${(err as Error).message}`);
      }
    }
    const stop = v.pull.leaderStop();
    // Told where a lost leader would have recommended a failover: once it counts as unreachable.
    if (
      stop &&
      v.leaderFailures >= v.thresholds.maxRetries &&
      this.toldStop !== `${stop.run_id}:${stop.seq}`
    ) {
      this.toldStop = `${stop.run_id}:${stop.seq}`;
      this.o.log(`replicate follow: ${ev.decision}, no runbook: ${leaderStopReason(stop, v.leaderFailures)}`);
    }
    this.lastDecision = ev.decision;
    return ev;
  }
}

/** The `GET /status` document of a follower. */
export async function followerStatus(v: FollowerView): Promise<Record<string, unknown>> {
  const ev = evaluateAsFollower(v);
  const backup = await lastBackupInfo(v.ws);
  const lag = v.pull.lagEntries();
  const listed = v.pull.listedOnce;
  return {
    role: "follower",
    region: v.region,
    url: v.url,
    leader_url: v.leaderUrl,
    epoch: v.epoch,
    state: v.state,
    integrity_error: v.role.integrity_error ?? null,
    leader: {
      epoch: v.leaderEpoch,
      consecutive_failures: v.leaderFailures,
      stopped_cleanly: v.pull.leaderStop(),
      last_contact_at: v.lastContactAt === null ? null : new Date(v.lastContactAt).toISOString(),
      last_error: v.lastError,
      tails: Object.fromEntries(v.pull.leaderTails),
    },
    wal: {
      runs: [...v.pull.local.entries()].map(([run_id, t]) => ({
        run_id,
        last_seq: t.seq,
        last_hash: t.seq >= 0 ? t.hash : null,
      })),
      position: v.pull.position(),
    },
    lag: listed ? { entries: lag, seconds: v.pull.lagSeconds() } : { entries: null, seconds: null },
    base_snapshot: v.role.base_snapshot ?? null,
    last_backup: backup,
    rpo_estimate: listed
      ? { entries: lag, seconds: v.pull.lagSeconds(), basis: "this follower's lag" }
      : { entries: null, seconds: null, basis: "not in contact with the leader yet" },
    failover: { ...ev, last_runbook: v.lastRunbook },
    counters: v.counters,
  };
}

/** The Prometheus text of a follower's `GET /metrics`. */
export async function followerMetrics(v: FollowerView): Promise<string> {
  const m = new MetricsText();
  const region = { follower: v.region };
  m.add("bernstein_replication_epoch", "gauge", "Replication epoch of this node", v.epoch);
  m.add(
    "bernstein_replication_follower_applied_entries_total",
    "counter",
    "WAL entries verified and appended",
    v.counters.entries_applied,
  );
  m.add(
    "bernstein_replication_follower_lag_entries",
    "gauge",
    "Entries behind the leader (as last seen)",
    v.pull.lagEntries(),
    region,
  );
  m.add(
    "bernstein_replication_follower_lag_seconds",
    "gauge",
    "Seconds since this follower last held the leader's tail",
    v.pull.lagSeconds(),
    region,
  );
  m.add(
    "bernstein_replication_integrity_error",
    "gauge",
    "1 when an integrity error stopped applying",
    v.role.integrity_error ? 1 : 0,
  );
  m.add(
    "bernstein_replication_leader_consecutive_failures",
    "gauge",
    "Consecutive failed contacts with the leader",
    v.leaderFailures,
  );
  const b = await lastBackupInfo(v.ws);
  m.add(
    "bernstein_replication_last_backup_age_seconds",
    "gauge",
    "Age of the last good backup",
    b?.age_seconds ?? null,
  );
  return m.toString();
}
