/**
 * The replication leader: serves its WAL and base snapshot to followers, records their
 * acknowledgements, tracks their health, applies the acknowledgement policy on the commit path
 * (`commitGate`, plugged into the WAL writer), and is fenced for good once it learns of a newer
 * epoch. It holds positions, never entries: followers read entries from the WAL files.
 */
import type { ServerResponse } from "node:http";
import { setLongInterval, setLongTimeout, type Timer } from "../workspace/timer.js";
import type { Workspace } from "../workspace/layout.js";
import {
  AckPolicy,
  type AckPolicyName,
  type CommitPosition,
  type OnAckTimeout,
  ReplicationError,
  requiredAcks,
} from "./ack-policy.js";
import { lastBackupInfo } from "./backup-info.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { Peer, REGION_NAME, parsePeerUrl } from "./client.js";
import {
  type EpochState,
  announcedEpochProblem,
  fencedMessage,
  readEpoch,
  recordSuperseded,
} from "./epoch.js";
import {
  DEFAULT_THRESHOLDS,
  type FollowerRecord,
  type FollowerView,
  type HealthThresholds,
  firstMissing,
  lagEntries,
  newFollowerRecord,
  viewOf,
} from "./health.js";
import { type LeaderStatus, leaderMetrics, rpoEstimate } from "./leader-status.js";
import { followerRefusal, readRole } from "../workspace/replication-role.js";
import type { ConnectionLimits } from "./limits.js";
import {
  type NodeHandlers,
  type RequestContext,
  type RunningServer,
  HttpError,
  MAX_WAIT_MS,
  startServer,
} from "./server.js";
import { WalSource } from "./wal-source.js";

export type { LeaderStatus };

export interface FollowerSpec {
  name: string;
  /** The follower's own endpoint (its `replicate follow --listen`), probed for health and epoch. */
  url?: string;
}

/** Parses `NAME` or `NAME=URL` (a `--follower` flag). */
export function parseFollowerSpec(value: string): FollowerSpec {
  const eq = value.indexOf("=");
  const name = eq < 0 ? value : value.slice(0, eq);
  const url = eq < 0 ? undefined : value.slice(eq + 1);
  if (!REGION_NAME.test(name))
    throw new UserError(
      `--follower ${value}: expected NAME or NAME=URL, the name of letters, digits, . _ -`,
      ExitCode.USAGE,
    );
  return { name, url: url === undefined ? undefined : parsePeerUrl(url, `--follower ${value}`) };
}

/**
 * Every `--follower` flag: a name given twice is refused, since the policy counts names (a typo of
 * f2 as f1 would silently weaken ALL).
 */
export function parseFollowerSpecs(values: readonly string[]): FollowerSpec[] {
  const specs = values.map(parseFollowerSpec);
  const seen = new Set<string>();
  for (const { name } of specs) {
    if (seen.has(name))
      throw new UserError(
        `--follower ${name} is given twice: each configured follower needs its own name`,
        ExitCode.USAGE,
      );
    seen.add(name);
  }
  return specs;
}

export interface LeaderOptions {
  ws: Workspace;
  host: string;
  port: number;
  token: string;
  tls?: { certFile: string; keyFile: string };
  /** CA to trust when probing followers over https. */
  tlsCa?: string | Buffer;
  policy: AckPolicyName;
  followers: FollowerSpec[];
  ackTimeoutMs: number;
  onAckTimeout: OnAckTimeout;
  thresholds?: HealthThresholds;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  log: (line: string) => void;
  audit?: (eventType: string, details: Record<string, unknown>) => Promise<void> | void;
  /** Streams the base snapshot (a `dr backup` archive whose manifest holds WAL positions). */
  snapshot?: (res: ServerResponse) => Promise<void>;
  /** Bounds on the connections the endpoint accepts (DEFAULT_LIMITS otherwise). */
  limits?: Partial<ConnectionLimits>;
}

export class ReplicationLeader {
  readonly wal: WalSource;
  readonly policy: AckPolicy;
  private readonly records = new Map<string, FollowerRecord>();
  private epochState!: EpochState;
  private server!: RunningServer;
  private probeTimer: Timer | null = null;
  private readonly thresholds: HealthThresholds;
  private readonly probeIntervalMs: number;
  /** Called after every acknowledgement (handOver waits on them). */
  private readonly ackListeners = new Set<() => void>();

  private constructor(private readonly o: LeaderOptions) {
    this.wal = new WalSource(o.ws);
    this.thresholds = o.thresholds ?? DEFAULT_THRESHOLDS;
    this.probeIntervalMs = o.probeIntervalMs ?? 1000;
    for (const f of o.followers) this.records.set(f.name, newFollowerRecord(f.name, f.url));
    this.policy = new AckPolicy({
      policy: o.policy,
      followers: o.followers.map((f) => f.name),
      timeoutMs: o.ackTimeoutMs,
      onTimeout: o.onAckTimeout,
      tails: () => this.wal.tails(),
      acked: (name) => this.records.get(name)?.acked,
      log: o.log,
      audit: o.audit ?? (() => {}),
    });
  }

  static async start(o: LeaderOptions): Promise<ReplicationLeader> {
    const role = await readRole(o.ws);
    // A fenced node may still serve (its endpoint answers 409 with the reason); `start` refuses it.
    if (role.role === "follower") throw new ReplicationError(followerRefusal(role.leader_url));
    if (o.policy !== "LEADER_ONLY" && o.followers.length === 0) {
      throw new UserError(`--ack-policy ${o.policy} needs at least one --follower`, ExitCode.USAGE);
    }
    const leader = new ReplicationLeader(o);
    leader.epochState = await readEpoch(o.ws);
    if (leader.epochState.superseded_by !== null) leader.policy.fence(fencedMessage(leader.epochState));
    await leader.wal.refresh();
    leader.server = await startServer({
      host: o.host,
      port: o.port,
      token: o.token,
      tls: o.tls,
      handlers: leader.handlers(),
      log: o.log,
      limits: o.limits,
    });
    leader.probeTimer = setLongInterval(() => void leader.probe(), leader.probeIntervalMs).unref();
    return leader;
  }

  get url(): string {
    return this.server.url;
  }
  get epoch(): number {
    return this.epochState.epoch;
  }
  get fenced(): boolean {
    return this.policy.state === "FENCED";
  }

  /**
   * The WAL writer's commit gate: awaited after the local fsync of `pos`. Wakes the followers'
   * long-polls, then waits for the policy (or rejects: halted, fenced).
   */
  commitGate = (pos: CommitPosition): Promise<void> => {
    this.wal.notifyDurable(pos.runId, pos.seq);
    return this.policy.gate(pos);
  };

  /**
   * Throws a REPLICATION error when the leader must not make a new decision (halted or fenced).
   * The orchestrator calls it before writing an intent, so nothing new reaches the WAL meanwhile.
   */
  assertCanDecide(): void {
    const s = this.policy.state;
    if (s === "FENCED") throw new ReplicationError(this.policy.reason ?? "fenced");
    if (s === "HALTED")
      throw new ReplicationError(
        `replication halted: ${this.policy.reason}; no new decisions until the followers catch up`,
      );
  }

  /**
   * The WAL writer of this process: serve its run only up to what it reported durable, and wake
   * the followers' long-polls as soon as a group is on disk. Open the writer with
   * `{ commitGate: leader.commitGate }` so that appends wait for the policy.
   */
  attachWriter(writer: {
    runId: string;
    durablePosition?: { seq: number };
    onDurable(cb: (pos: CommitPosition) => void): () => void;
  }): () => void {
    this.wal.limitRun(writer.runId, writer.durablePosition?.seq ?? -1);
    return writer.onDurable((pos) => this.wal.notifyDurable(pos.runId, pos.seq));
  }

  /** Learned of a newer epoch: persist it (a restart stays fenced) and refuse decisions. */
  private async supersede(newer: number, how: string): Promise<void> {
    if (newer <= this.epochState.epoch) return;
    if ((this.epochState.superseded_by ?? 0) < newer) {
      this.epochState = await recordSuperseded(this.o.ws, newer, how);
      await Promise.resolve(
        this.o.audit?.("replication_fenced", {
          epoch: this.epochState.epoch,
          superseded_by: newer,
          reason: how,
        }),
      ).catch((err: Error) => this.o.log(`replication: audit event failed: ${err.message}`));
    }
    this.policy.fence(fencedMessage(this.epochState));
  }

  private record(name: string): FollowerRecord | undefined {
    let r = this.records.get(name);
    if (!r && this.o.followers.length === 0) {
      // No configured followers (LEADER_ONLY): track whoever follows, for health only.
      r = newFollowerRecord(name);
      this.records.set(name, r);
    }
    return r;
  }

  private handlers(): NodeHandlers {
    return {
      epoch: () => this.epochState.epoch,
      checkEpoch: async (ctx: RequestContext, route: string) => {
        if (ctx.epoch !== undefined && ctx.epoch > this.epochState.epoch) {
          await this.supersede(
            ctx.epoch,
            `a ${ctx.region ? `request from ${ctx.region}` : "request"} carried epoch ${ctx.epoch}`,
          );
        }
        if (this.fenced && route !== "/status" && route !== "/metrics") return this.policy.reason ?? "fenced";
        return undefined;
      },
      contact: (ctx) => {
        if (!ctx.region) return;
        const r = this.record(ctx.region);
        if (!r) return;
        r.lastContactAt = Date.now();
        if (!r.url) r.consecutiveFailures = 0;
        if (ctx.epoch !== undefined) r.epoch = ctx.epoch;
      },
      status: () => this.status(),
      metrics: () => this.metrics(),
      wal: this.wal,
      ack: (body, ctx) => this.ack(body, ctx),
      snapshot: this.o.snapshot,
      fence: async (body) => {
        const epoch = (body as { epoch?: unknown })?.epoch;
        const problem = announcedEpochProblem(epoch, this.epochState.epoch);
        if (problem)
          throw new HttpError(400, `fence: epoch ${JSON.stringify(epoch) ?? "missing"}: ${problem}`);
        if ((epoch as number) > this.epochState.epoch) {
          await this.supersede(epoch as number, `fenced by a promotion to epoch ${epoch as number}`);
        }
        return { epoch: this.epochState.epoch, fenced: this.fenced };
      },
    };
  }

  private async ack(body: unknown, ctx: RequestContext): Promise<unknown> {
    const b = body as { region?: unknown; positions?: unknown; integrity_error?: unknown };
    const name = typeof b?.region === "string" ? b.region : ctx.region;
    if (!name) throw new ReplicationError("ack without region");
    if (!REGION_NAME.test(name)) throw new HttpError(400, "ack: a region is letters, digits, . _ -");
    const r = this.record(name);
    if (!r) throw new ReplicationError(`unknown follower "${name}" (not in --follower)`);
    // Positions only grow within an epoch: a replayed or reordered ack (an HTTP retry, a proxy)
    // must not move a follower back. An ack from an older epoch than the follower's last one
    // says nothing about this term; one from a newer epoch starts the count afresh.
    const ackEpoch = ctx.epoch ?? this.epochState.epoch;
    if (r.ackEpoch !== null && ackEpoch < r.ackEpoch) return { ok: true, epoch: this.epochState.epoch };
    if (r.ackEpoch !== null && ackEpoch > r.ackEpoch) r.acked.clear();
    r.ackEpoch = ackEpoch;
    if (b.positions && typeof b.positions === "object") {
      const tails = this.wal.tails();
      for (const [run, seq] of Object.entries(b.positions as Record<string, unknown>)) {
        if (typeof seq !== "number" || !Number.isSafeInteger(seq)) continue;
        // A follower can not hold more than we made durable; a larger claim is ignored.
        const tail = tails.get(run);
        if (tail === undefined || seq > tail) continue;
        if (seq > (r.acked.get(run) ?? -1)) r.acked.set(run, seq);
      }
    }
    r.integrityError = typeof b.integrity_error === "string" ? b.integrity_error : null;
    r.lastAckAt = Date.now();
    r.lastContactAt = r.lastAckAt;
    this.policy.onAck();
    for (const l of [...this.ackListeners]) l();
    return { ok: true, epoch: this.epochState.epoch };
  }

  /** Probes configured follower endpoints; counts consecutive failures; learns newer epochs. */
  private async probe(): Promise<void> {
    const now = Date.now();
    await Promise.all(
      [...this.records.values()].map(async (r) => {
        if (!r.url) {
          // Pull-only follower: silence longer than a long-poll plus an interval counts as a failure.
          if (r.lastContactAt !== null && now - r.lastContactAt > MAX_WAIT_MS + this.probeIntervalMs) {
            r.consecutiveFailures++;
          }
          return;
        }
        const peer = new Peer({
          baseUrl: r.url,
          token: this.o.token,
          ca: this.o.tlsCa,
          epoch: () => this.epochState.epoch,
        });
        try {
          const res = await peer.call("GET", "/status", {
            timeoutMs: this.o.probeTimeoutMs ?? Math.max(200, this.probeIntervalMs),
          });
          const problem = res.epoch === undefined ? undefined : announcedEpochProblem(res.epoch, this.epoch);
          if (problem) throw new Error(`reports epoch ${res.epoch}: ${problem}`);
          if (res.epoch !== undefined && res.epoch > this.epochState.epoch) {
            await this.supersede(res.epoch, `follower ${r.name} reports epoch ${res.epoch}`);
          }
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
          const st = JSON.parse(res.body) as { integrity_error?: string | null; epoch?: number };
          r.consecutiveFailures = 0;
          r.lastError = null;
          r.lastContactAt = Date.now();
          r.epoch = typeof st.epoch === "number" ? st.epoch : r.epoch;
          r.integrityError = st.integrity_error ?? null;
        } catch (err) {
          r.consecutiveFailures++;
          r.lastError = (err as Error).message;
        }
      }),
    );
  }

  async followerViews(): Promise<FollowerView[]> {
    const tails = this.wal.tails();
    const now = Date.now();
    const out: FollowerView[] = [];
    for (const r of this.records.values()) {
      let oldest: number | null = null;
      for (const [run, seq] of firstMissing(tails, r.acked)) {
        const t = await this.wal.entryTimestamp(run, seq);
        if (t !== null && (oldest === null || t < oldest)) oldest = t;
      }
      const lagSec = oldest === null ? null : Math.max(0, now / 1000 - oldest);
      out.push(viewOf(r, tails, this.thresholds, lagSec));
    }
    return out;
  }

  async status(): Promise<LeaderStatus> {
    await this.wal.refresh();
    const runs = this.wal.listRuns();
    const followers = await this.followerViews();
    const backup = await lastBackupInfo(this.o.ws);
    const newest = runs.filter((r) => r.last_seq >= 0).at(-1);
    return {
      role: "leader",
      url: this.server.url,
      epoch: this.epochState.epoch,
      fenced: this.fenced,
      fenced_reason: this.fenced ? this.policy.reason : null,
      policy: this.o.policy,
      required_acks: requiredAcks(this.o.policy, this.o.followers.length),
      on_ack_timeout: this.o.onAckTimeout,
      ack_timeout_ms: this.o.ackTimeoutMs,
      policy_state: this.policy.state,
      policy_reason: this.policy.reason,
      wal: { runs, position: newest ? { run_id: newest.run_id, seq: newest.last_seq } : null },
      followers,
      last_backup: backup,
      rpo_estimate: rpoEstimate(followers, backup, runs),
    };
  }

  async metrics(): Promise<string> {
    return leaderMetrics(await this.status(), this.policy.counters);
  }

  /**
   * After a clean stop, before the endpoint closes: waits (up to `timeoutMs`, the ack timeout by
   * default) until every follower in contact acknowledged the whole WAL. The run's last entry,
   * `orchestrator_stopped`, is then on each of them, so they know this leader stopped rather than
   * died, whatever the policy (LEADER_ONLY waits for no one on the commit path). Returns the
   * followers that did not get there.
   */
  async handOver(timeoutMs = this.o.ackTimeoutMs): Promise<string[]> {
    await this.wal.refresh();
    const tails = this.wal.tails();
    const behind = (): string[] =>
      [...this.records.values()]
        .filter(
          (r) =>
            r.lastContactAt !== null &&
            r.consecutiveFailures < this.thresholds.maxRetries &&
            !r.integrityError &&
            lagEntries(tails, r.acked) > 0,
        )
        .map((r) => r.name);
    // A fenced leader's followers left it: none would take its entries.
    if (this.fenced || behind().length === 0) return [];
    await new Promise<void>((resolve) => {
      const done = (): void => {
        timer.clear();
        this.ackListeners.delete(check);
        resolve();
      };
      const check = (): void => {
        if (behind().length === 0) done();
      };
      // The ack timeout is the user's: Node's setTimeout would fire a delay past 2^31-1 ms at once.
      const timer = setLongTimeout(done, timeoutMs);
      this.ackListeners.add(check);
    });
    const left = behind();
    if (left.length > 0)
      this.o.log(
        `replication: stopping before follower(s) ${left.join(", ")} acknowledged the last entry: they cannot tell this clean stop from a loss`,
      );
    return left;
  }

  async close(): Promise<void> {
    this.probeTimer?.clear();
    this.policy.close();
    this.wal.close();
    await this.server.close();
  }
}
