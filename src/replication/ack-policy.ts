/**
 * Acknowledgement policies on the leader's commit path. The WAL writer awaits `gate(pos)` after
 * its local fsync and before the append resolves:
 *   LEADER_ONLY: resolves at once (the local fsync is the acknowledgement);
 *   QUORUM: after a majority of the replica set (the leader counts as one) holds the position,
 *           i.e. ceil(n/2) of n configured followers acknowledged it;
 *   ALL: after every configured follower acknowledged it.
 * The gate holds only positions (run, seq), never entries: followers read entries from the WAL
 * files, so nothing is buffered in memory beyond the appends in flight.
 *
 * When the policy is not met within the ack timeout the leader HALTS: pending and new gates reject
 * with a REPLICATION error (exit 8) and it says so (state, log line, metric) until the followers
 * have acknowledged the whole durable tail again. With `onTimeout: "degrade"` it instead continues
 * as LEADER_ONLY (state DEGRADED) and writes an audit event; the configured policy is restored
 * the same way. A fenced leader (a newer epoch exists) rejects every gate, for good.
 *
 * SIGINT/SIGTERM of the leader's process ends the waits in progress at once (`interrupt`): the
 * entry is in the local WAL, not acknowledged, and the caller does not act on it.
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { interruptedExitCode, type InterruptSignal } from "../workspace/interrupt.js";
import { setLongTimeout, type Timer } from "../workspace/timer.js";

export type AckPolicyName = "LEADER_ONLY" | "QUORUM" | "ALL";
export const ACK_POLICIES: readonly AckPolicyName[] = ["LEADER_ONLY", "QUORUM", "ALL"];
export type OnAckTimeout = "stop" | "degrade";
export type PolicyState = "OK" | "HALTED" | "DEGRADED" | "FENCED";

export class ReplicationError extends UserError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(message, ExitCode.REPLICATION, details);
    this.name = "ReplicationError";
  }
}

export function parseAckPolicy(value: string): AckPolicyName {
  const v = value.toUpperCase().replace(/-/g, "_");
  if ((ACK_POLICIES as readonly string[]).includes(v)) return v as AckPolicyName;
  throw new UserError(`unknown ack policy "${value}" (expected LEADER_ONLY, QUORUM or ALL)`, ExitCode.USAGE);
}

/** Follower acknowledgements a position needs under the policy, with n configured followers. */
export function requiredAcks(policy: AckPolicyName, followerCount: number): number {
  switch (policy) {
    case "LEADER_ONLY":
      return 0;
    case "ALL":
      return followerCount;
    case "QUORUM":
      return Math.ceil(followerCount / 2);
  }
}

/**
 * Followers (the promoted one included) a promotion must reach so that it intersects every set
 * that acknowledged a decision: n − required + 1. Reaching them gives the promoted node every
 * acknowledged entry, and fencing them leaves the old leader fewer than `required` followers.
 * LEADER_ONLY waits for no follower (n − 0 + 1 would exceed the n there are), so no set is sure
 * to hold every decision: the promotion must reach all n, which gathers every entry any follower holds.
 */
export function promotionQuorum(policy: AckPolicyName, followerCount: number): number {
  return Math.min(followerCount, followerCount - requiredAcks(policy, followerCount) + 1);
}

export interface CommitPosition {
  runId: string;
  seq: number;
}

export interface AckPolicyOptions {
  policy: AckPolicyName;
  followers: string[];
  timeoutMs: number;
  onTimeout: OnAckTimeout;
  /** The leader's durable tail per run (to decide when a halted/degraded leader may resume). */
  tails: () => Map<string, number>;
  /** Acknowledged seq per follower and run. */
  acked: (follower: string) => Map<string, number> | undefined;
  log: (line: string) => void;
  audit: (eventType: string, details: Record<string, unknown>) => Promise<void> | void;
}

interface Waiter {
  pos: CommitPosition;
  started: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: Timer;
}

/** How long a decision waiting at a signal may still wait for its acknowledgements. */
export const INTERRUPT_GRACE_MS = 2000;

export class AckPolicy {
  private readonly waiters = new Set<Waiter>();
  private stateValue: PolicyState = "OK";
  private reasonValue: string | null = null;
  readonly counters = { acknowledged: 0, timeouts: 0, rejected: 0, degraded: 0, halted: 0 };

  constructor(private readonly o: AckPolicyOptions) {}

  get policy(): AckPolicyName {
    return this.o.policy;
  }
  get required(): number {
    return requiredAcks(this.o.policy, this.o.followers.length);
  }
  get state(): PolicyState {
    return this.stateValue;
  }
  get reason(): string | null {
    return this.reasonValue;
  }
  get pending(): number {
    return this.waiters.size;
  }

  private ackCount(pos: CommitPosition): number {
    let n = 0;
    for (const f of this.o.followers) {
      const a = this.o.acked(f)?.get(pos.runId);
      if (a !== undefined && a >= pos.seq) n++;
    }
    return n;
  }

  /** Awaited by the WAL writer after the local fsync of `pos`. */
  gate = (pos: CommitPosition): Promise<void> => {
    if (this.stateValue === "FENCED") {
      this.counters.rejected++;
      return Promise.reject(new ReplicationError(this.reasonValue ?? "fenced"));
    }
    if (this.stateValue === "HALTED") {
      this.counters.rejected++;
      return Promise.reject(new ReplicationError(this.haltedMessage()));
    }
    if (this.stateValue === "DEGRADED" || this.ackCount(pos) >= this.required) {
      this.counters.acknowledged++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        pos,
        started: Date.now(),
        resolve,
        reject,
        timer: setLongTimeout(() => this.timedOut(w), this.o.timeoutMs),
      };
      this.waiters.add(w);
    });
  };

  private haltedMessage(): string {
    return `replication halted: ${this.reasonValue}; the leader makes no new decisions until the followers catch up`;
  }

  private timedOut(w: Waiter): void {
    if (!this.waiters.has(w)) return;
    this.counters.timeouts++;
    const reason = `${this.o.policy} not met within ${this.o.timeoutMs} ms for ${w.pos.runId}#${w.pos.seq} (${this.ackCount(
      w.pos,
    )}/${this.required} follower acknowledgements)`;
    if (this.o.onTimeout === "degrade") {
      this.stateValue = "DEGRADED";
      this.reasonValue = reason;
      this.counters.degraded++;
      this.o.log(`replication: DEGRADED to LEADER_ONLY: ${reason}`);
      void Promise.resolve(
        this.o.audit("replication_degraded", {
          policy: this.o.policy,
          reason,
          run_id: w.pos.runId,
          seq: w.pos.seq,
        }),
      ).catch((err) => this.o.log(`replication: audit event failed: ${(err as Error).message}`));
      for (const other of [...this.waiters]) this.settle(other, true);
      return;
    }
    this.stateValue = "HALTED";
    this.reasonValue = reason;
    this.counters.halted++;
    this.o.log(`replication: HALTED: ${reason}; no new decisions until the followers catch up`);
    const err = new ReplicationError(this.haltedMessage());
    for (const other of [...this.waiters]) {
      this.counters.rejected++;
      this.waiters.delete(other);
      other.timer.clear();
      other.reject(err);
    }
  }

  private settle(w: Waiter, ok: boolean): void {
    this.waiters.delete(w);
    w.timer.clear();
    if (ok) {
      this.counters.acknowledged++;
      w.resolve();
    }
  }

  /** Called after a follower's acknowledgement was recorded. */
  onAck(): void {
    for (const w of [...this.waiters]) {
      if (this.ackCount(w.pos) >= this.required) this.settle(w, true);
    }
    if (this.stateValue === "HALTED" || this.stateValue === "DEGRADED") this.maybeResume();
  }

  /** A halted or degraded leader resumes its policy once the followers hold its whole durable tail. */
  private maybeResume(): void {
    for (const [runId, seq] of this.o.tails()) {
      if (seq >= 0 && this.ackCount({ runId, seq }) < this.required) return;
    }
    const was = this.stateValue;
    this.stateValue = "OK";
    this.reasonValue = null;
    this.o.log(
      `replication: ${this.o.policy} met again; ${was === "HALTED" ? "resuming decisions" : "policy restored"}`,
    );
    if (was === "DEGRADED") {
      void Promise.resolve(this.o.audit("replication_restored", { policy: this.o.policy })).catch(() => {});
    }
  }

  /**
   * SIGINT/SIGTERM: the gates waiting now wait at most `graceMs` more, then reject with the
   * interruption (exit 130/143), so the run ends soon rather than after the ack timeout (or never,
   * when the followers stay away). On a healthy cluster the acknowledgements come within the
   * grace and the run drains as after any signal, its clean stop seen by the followers. An entry
   * still unacknowledged then stays in the local WAL, not acted on: the next start recovers it
   * (an intent not yet executed is replayed) and the followers catch up from it; a failover to a
   * follower without it loses it, as any decision never acknowledged. Gates started later wait as
   * usual: the clean stop's `orchestrator_stopped` needs its acknowledgements. Returns whether a
   * gate was waiting.
   */
  interrupt(signal: InterruptSignal, graceMs = INTERRUPT_GRACE_MS): boolean {
    const waiting = [...this.waiters];
    for (const w of waiting) {
      w.timer.clear();
      w.timer = setLongTimeout(() => this.interrupted(w, signal), graceMs);
    }
    return waiting.length > 0;
  }

  private interrupted(w: Waiter, signal: InterruptSignal): void {
    if (!this.waiters.has(w)) return;
    this.waiters.delete(w);
    this.counters.rejected++;
    w.reject(
      new UserError(
        `interrupted by ${signal} while decision ${w.pos.runId}#${w.pos.seq} waited for ${this.o.policy} acknowledgements (${this.ackCount(
          w.pos,
        )}/${
          this.required
        }): it is in the local WAL, not acknowledged; the next start recovers it (replaying an intent not yet executed) and the followers catch up, while a failover before then loses it`,
        interruptedExitCode(signal),
      ),
    );
  }

  /** A newer epoch exists: reject everything, for good. */
  fence(message: string): void {
    if (this.stateValue === "FENCED") return;
    this.stateValue = "FENCED";
    this.reasonValue = message;
    this.o.log(`replication: ${message}`);
    const err = new ReplicationError(message);
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w.timer.clear();
      this.counters.rejected++;
      w.reject(err);
    }
  }

  close(): void {
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w.timer.clear();
      w.reject(new ReplicationError("replication: leader shutting down"));
    }
  }
}
