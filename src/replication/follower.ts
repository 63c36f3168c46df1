/**
 * The follower: bootstraps from the leader's base snapshot, then pulls WAL entries in batches,
 * checks that each continues its run's hash chain, appends them durably (byte-identical lines) to
 * its own WAL, and acknowledges the highest durable position. A chain break or tampered entry is
 * an integrity error: it stops applying, records the error durably, reports it (status, ack, log)
 * and re-bootstraps only when told (`--rebootstrap`). It refuses a leader whose epoch is older than
 * its own, adopts a newer one durably, and serves its own status, metrics and WAL.
 *
 * The parts: bootstrap (`follower-bootstrap.ts`), the pull rounds (`follower-pull.ts`), the acks
 * (`follower-acks.ts`), the snapshot refresh (`follower-refresh.ts`), status and metrics
 * (`follower-status.ts`); this file runs the loop and holds the state they share.
 */
import path from "node:path";
import { setLongTimeout } from "../workspace/timer.js";
import { type WorkspaceLock, acquireLock } from "../workspace/lock.js";
import { type Workspace, initWorkspace } from "../workspace/layout.js";
import { GENESIS_HASH, IntegrityError } from "../wal/continuation.js";
import { listWalRunFiles } from "../wal/run-files.js";
import { repairTornTail } from "../wal/tail-repair.js";
import { ReplicationError } from "./ack-policy.js";
import { Peer, TransportError, errorText } from "./client.js";
import { adoptEpoch } from "./epoch.js";
import { AckSender } from "./follower-acks.js";
import { FollowerEpoch } from "./follower-epoch.js";
import {
  type InstallSnapshot,
  fetchBaseSnapshot,
  needsBootstrap,
  quarantineWal,
} from "./follower-bootstrap.js";
import { EpochRefusal, WalPuller } from "./follower-pull.js";
import { SnapshotRefresher, type StoreSnapshot } from "./follower-refresh.js";
import {
  FailoverWatch,
  type FollowerState,
  type FollowerView,
  followerMetrics,
  followerStatus,
} from "./follower-status.js";
import { DEFAULT_THRESHOLDS, type HealthThresholds } from "./health.js";
import { type RoleState, readRole, writeRole } from "../workspace/replication-role.js";
import type { ConnectionLimits } from "./limits.js";
import { type NodeHandlers, type RunningServer, startServer } from "./server.js";
import { WalSource } from "./wal-source.js";

export type { FollowerState };

export interface FollowerOptions {
  ws: Workspace;
  leaderUrl: string;
  region: string;
  token: string;
  tokenFile?: string;
  tlsCa?: string | Buffer;
  batchSize?: number;
  waitMs?: number;
  retryMs?: number;
  thresholds?: HealthThresholds;
  snapshotIntervalMs?: number;
  listen?: { host: string; port: number };
  /** Bounds on the connections its endpoint (`listen`) accepts (DEFAULT_LIMITS otherwise). */
  limits?: Partial<ConnectionLimits>;
  tls?: { certFile: string; keyFile: string };
  rebootstrap?: boolean;
  log: (line: string) => void;
  /**
   * Installs a base snapshot streamed from the leader into the workspace (DR restore); returns the
   * WAL positions recorded in its manifest. Without it the follower replicates the WAL only.
   */
  installSnapshot?: InstallSnapshot;
  /** Stores a refreshed base snapshot (kept for promotion); returns its WAL positions. */
  storeSnapshot?: StoreSnapshot;
  /** Stops a bootstrap in progress (SIGINT/SIGTERM): `start` then rejects, the lock released. */
  interrupted?: AbortSignal;
}

export class ReplicationFollower {
  private peer: Peer;
  private readonly ownWal: WalSource;
  private readonly pull: WalPuller;
  private readonly acks: AckSender;
  private readonly refresher: SnapshotRefresher;
  private readonly failover: FailoverWatch;
  private readonly epochs: FollowerEpoch;
  private role!: RoleState;
  private server: RunningServer | null = null;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private abortPoll: (() => void) | null = null;
  private abortSnapshot: (() => void) | null = null;
  private stateValue: FollowerState = "BOOTSTRAPPING";
  private leaderFailures = 0;
  private lastError: string | null = null;
  /** Role writes one after the other: the loop, a refresh and a fence each change a field. */
  private roleWrites: Promise<unknown> = Promise.resolve();
  private lastClusterAt = 0;
  private lock: WorkspaceLock | null = null;
  private readonly thresholds: HealthThresholds;
  readonly counters = { entries_applied: 0, batches_applied: 0, acks_sent: 0 };

  private constructor(private readonly o: FollowerOptions) {
    o.interrupted?.addEventListener("abort", () => {
      this.stopped = true;
      this.abortPoll?.();
      this.abortSnapshot?.();
    });
    this.peer = this.makePeer(o.leaderUrl);
    this.ownWal = new WalSource(o.ws);
    this.thresholds = o.thresholds ?? DEFAULT_THRESHOLDS;
    this.epochs = new FollowerEpoch(o.ws, o.log);
    const isStopped = () => this.stopped;
    this.failover = new FailoverWatch({ tokenFile: o.tokenFile, log: o.log });
    this.acks = new AckSender({
      send: () => this.ack(),
      isStopped,
      onError: (err) => (this.lastError = `ack: ${err.message}`),
    });
    this.pull = new WalPuller({
      ws: o.ws,
      peer: () => this.peer,
      batchSize: o.batchSize,
      waitMs: o.waitMs,
      retryMs: o.retryMs,
      checkEpoch: (epoch) => this.epochs.checkLeader(epoch, this.peer.o.baseUrl),
      isStopped,
      sleep: (ms) => this.sleep(ms),
      setAbort: (abort) => (this.abortPoll = abort),
      onApplied: (entries) => {
        this.counters.entries_applied += entries;
        this.counters.batches_applied++;
        this.acks.soon();
      },
      ackSoon: () => this.acks.soon(),
    });
    this.refresher = new SnapshotRefresher({
      ws: o.ws,
      store: o.storeSnapshot,
      everyMs: o.snapshotIntervalMs ?? 0,
      peer: () => this.peer,
      isStopped,
      log: o.log,
      recordBase: (base) => this.updateRole((role) => ({ ...role, base_snapshot: base })),
    });
  }

  private makePeer(url: string): Peer {
    return new Peer({
      baseUrl: url,
      token: this.o.token,
      ca: this.o.tlsCa,
      epoch: () => this.epochs.epoch,
      region: this.o.region,
    });
  }

  static async start(o: FollowerOptions): Promise<ReplicationFollower> {
    const f = new ReplicationFollower(o);
    try {
      await f.prepare();
    } catch (err) {
      await f.lock?.release();
      throw err;
    }
    if (o.listen) {
      f.server = await startServer({
        ...o.listen,
        token: o.token,
        tls: o.tls,
        handlers: f.handlers(),
        log: o.log,
        limits: o.limits,
      });
    }
    f.loopDone = f.loop();
    return f;
  }

  get url(): string | null {
    return this.server?.url ?? null;
  }
  get state(): FollowerState {
    return this.stateValue;
  }

  lagEntries(): number {
    return this.pull.lagEntries();
  }

  /** Bootstrap when needed, then read the local WAL tails. */
  private async prepare(): Promise<void> {
    const { ws } = this.o;
    await initWorkspace(ws.root);
    this.lock = await acquireLock(ws, "replicate follow");
    this.role = await readRole(ws);
    const hasWal = (await listWalRunFiles(ws.walDir).catch(() => [])).length > 0;
    if (needsBootstrap(ws, this.role, hasWal, this.o)) {
      await this.bootstrap(hasWal);
    } else if (this.role.leader_url !== this.o.leaderUrl) {
      await this.updateRole((role) => ({ ...role, leader_url: this.o.leaderUrl }));
    }
    await this.epochs.load();
    for (const run of await listWalRunFiles(ws.walDir)) {
      if (await repairTornTail(run.file, run.run_id)) {
        this.o.log(`replicate follow: cut a torn last line of ${path.basename(run.file)}`);
      }
      // A follower started while its leader is down knows from its WAL whether it stopped cleanly.
      await this.pull.noteLocalTail(run.run_id, run.file);
    }
    await this.ownWal.refresh();
    for (const r of this.ownWal.listRuns()) {
      this.pull.local.set(r.run_id, {
        seq: r.last_seq,
        hash: r.last_seq < 0 ? GENESIS_HASH : (r.last_hash ?? GENESIS_HASH),
      });
    }
    if (this.role.integrity_error) {
      this.stateValue = "STOPPED_INTEGRITY";
      this.o.log(
        `replicate follow: integrity error recorded, not applying: ${this.role.integrity_error}; rerun with --rebootstrap`,
      );
    }
    // Before the first pull: a leader lost within its first seconds leaves a runbook (and a
    // promotion) that know its policy and followers.
    await this.maybeLearnCluster();
  }

  private async bootstrap(hadWal: boolean): Promise<void> {
    const { ws } = this.o;
    if (hadWal) await quarantineWal(ws, this.o.log);
    // Until it finishes, the workspace is a follower that must bootstrap again (not a leader).
    await this.updateRole(() => ({
      role: "follower",
      leader_url: this.o.leaderUrl,
      region: this.o.region,
      bootstrapping: true,
    }));
    let fetched = { positions: null as Record<string, number> | null, integrityError: null as string | null };
    if (this.o.installSnapshot) {
      const f = await fetchBaseSnapshot({
        ws,
        leaderUrl: this.o.leaderUrl,
        peer: this.peer,
        install: this.o.installSnapshot,
        retryMs: this.o.retryMs ?? 1000,
        log: this.o.log,
        isStopped: () => this.stopped,
        sleep: (ms) => this.sleep(ms),
        setAbort: (abort) => (this.abortSnapshot = abort),
        releaseLock: async () => {
          await this.lock?.release();
          this.lock = null;
        },
        retakeLock: async () => {
          await initWorkspace(ws.root);
          this.lock = await acquireLock(ws, "replicate follow");
        },
      });
      if (f.leaderEpoch !== null) this.epochs.leaderEpoch = f.leaderEpoch;
      fetched = f;
    }
    if (this.epochs.leaderEpoch === null) {
      const r = await this.peer.call("GET", "/status", { timeoutMs: 10_000 });
      if (r.status === 401) throw new ReplicationError(`leader ${this.o.leaderUrl} refused the token`);
      this.epochs.leaderEpoch = r.epoch ?? 1;
    }
    const leaderEpoch = this.epochs.leaderEpoch;
    await adoptEpoch(ws, leaderEpoch);
    await this.updateRole(() => ({
      role: "follower",
      leader_url: this.o.leaderUrl,
      region: this.o.region,
      integrity_error: fetched.integrityError,
      base_snapshot: fetched.positions
        ? { file: "", fetched_at: new Date().toISOString(), wal_positions: fetched.positions }
        : null,
    }));
    this.refresher.fetchedNow();
    this.o.log(`replicate follow: bootstrapped from ${this.o.leaderUrl} at epoch ${leaderEpoch}`);
  }

  private async loop(): Promise<void> {
    const retryMs = this.o.retryMs ?? 1000;
    while (!this.stopped) {
      if (this.stateValue === "STOPPED_INTEGRITY") {
        // Keep telling the leader (its status shows the error per follower); apply nothing.
        await this.ack().catch(() => {});
        await this.failover.evaluate(this.view());
        await this.sleep(retryMs);
        continue;
      }
      try {
        await this.pull.cycle();
        if (this.stateValue !== "FOLLOWING")
          this.o.log(`replicate follow: following ${this.peer.o.baseUrl} at epoch ${this.epochs.epoch}`);
        this.stateValue = "FOLLOWING";
        this.leaderFailures = 0;
        this.lastError = null;
        this.refresher.maybeStart();
        await this.maybeLearnCluster();
      } catch (err) {
        if (this.stopped) break;
        await this.onRoundFailed(err, retryMs);
      }
      await this.failover.evaluate(this.view());
    }
  }

  private async onRoundFailed(err: unknown, retryMs: number): Promise<void> {
    if (err instanceof IntegrityError) {
      await this.integrity(err);
    } else if (err instanceof EpochRefusal) {
      if (this.stateValue !== "REFUSED_EPOCH") this.o.log(`replicate follow: ${err.message}`);
      this.stateValue = "REFUSED_EPOCH";
      this.lastError = err.message;
      await this.sleep(retryMs);
    } else {
      this.leaderFailures++;
      this.lastError = (err as Error).message;
      if (this.leaderFailures === 1 || this.leaderFailures === this.thresholds.maxRetries) {
        this.o.log(`replicate follow: leader contact failed (${this.leaderFailures}): ${this.lastError}`);
      }
      if (this.leaderFailures >= this.thresholds.maxRetries)
        this.stateValue = this.pull.leaderStop() ? "LEADER_STOPPED" : "LEADER_UNREACHABLE";
      await this.sleep(retryMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setLongTimeout(() => {
        this.abortPoll = null;
        resolve();
      }, ms);
      this.abortPoll = () => {
        t.clear();
        resolve();
      };
    });
  }

  private async ack(): Promise<void> {
    const r = await this.peer.call("POST", "/ack", {
      body: {
        region: this.o.region,
        positions: this.pull.positions(),
        integrity_error: this.role.integrity_error ?? null,
      },
      timeoutMs: 10_000,
    });
    await this.epochs.checkLeader(r.epoch, this.peer.o.baseUrl);
    if (r.status !== 200)
      throw new TransportError(`POST /ack: HTTP ${r.status}: ${errorText(r.body)}`, r.status);
    this.counters.acks_sent++;
  }

  private async integrity(err: IntegrityError): Promise<void> {
    // In memory first: status answers in between must never show the state without its reason.
    this.role = { ...this.role, integrity_error: err.message };
    this.stateValue = "STOPPED_INTEGRITY";
    this.lastError = err.message;
    await this.updateRole((role) => ({ ...role, integrity_error: err.message }));
    this.o.log(
      `replicate follow: INTEGRITY ERROR, stopped applying: ${err.message}; rerun with --rebootstrap once the leader's WAL is sound`,
    );
    await this.ack().catch(() => {});
  }

  /** Records the leader's policy and followers (a promotion needs them) every few seconds. */
  private async maybeLearnCluster(): Promise<void> {
    if (Date.now() - this.lastClusterAt < 5000) return;
    this.lastClusterAt = Date.now();
    try {
      const r = await this.peer.json<{
        policy?: string;
        followers?: Array<{ name: string; url: string | null }>;
      }>("GET", "/status", {
        timeoutMs: 5000,
      });
      const cluster = {
        policy: r.value.policy ?? "LEADER_ONLY",
        followers: (r.value.followers ?? []).map((f) => ({ name: f.name, url: f.url ?? null })),
      };
      if (JSON.stringify(cluster) !== JSON.stringify(this.role.cluster ?? null)) {
        await this.updateRole((role) => ({ ...role, cluster }));
      }
    } catch {
      // the next round tries again; the pull loop reports leader failures
    }
  }

  /** Applies `change` to the role and writes it, after every earlier role write. */
  private updateRole(change: (role: RoleState) => Omit<RoleState, "updated_at">): Promise<void> {
    const write = this.roleWrites.then(async () => {
      this.role = await writeRole(this.o.ws, change(this.role));
    });
    this.roleWrites = write.catch(() => {});
    return write;
  }

  private view(): FollowerView {
    return {
      ws: this.o.ws,
      region: this.o.region,
      url: this.url,
      leaderUrl: this.peer.o.baseUrl,
      epoch: this.epochs.epoch,
      state: this.stateValue,
      role: this.role,
      leaderEpoch: this.epochs.leaderEpoch,
      leaderFailures: this.leaderFailures,
      lastContactAt: this.epochs.lastContactAt,
      lastError: this.lastError,
      thresholds: this.thresholds,
      pull: this.pull,
      lastRunbook: this.failover.lastRunbook,
      counters: this.counters,
    };
  }

  async status(): Promise<Record<string, unknown>> {
    return followerStatus(this.view());
  }

  private handlers(): NodeHandlers {
    return {
      epoch: () => this.epochs.epoch,
      checkEpoch: async (ctx) => {
        await this.epochs.adoptNewer(ctx.epoch);
        return undefined;
      },
      status: () => this.status(),
      metrics: () => followerMetrics(this.view()),
      wal: this.ownWal,
      fence: (body) => this.fence(body),
    };
  }

  /** `POST /fence`: adopt a newer epoch and, when named, follow the new leader. */
  private async fence(body: unknown): Promise<{ epoch: number; positions: Record<string, number> }> {
    const b = body as { epoch?: unknown; leader_url?: unknown };
    await this.epochs.fence(b?.epoch);
    if (typeof b.leader_url === "string" && b.leader_url !== this.peer.o.baseUrl) {
      await this.updateRole((role) => ({ ...role, leader_url: b.leader_url as string }));
      this.peer = this.makePeer(b.leader_url);
      this.o.log(`replicate follow: fenced at epoch ${this.epochs.epoch}; now following ${b.leader_url}`);
    } else {
      this.o.log(`replicate follow: fenced at epoch ${this.epochs.epoch}`);
    }
    this.abortPoll?.();
    return { epoch: this.epochs.epoch, positions: this.pull.positions() };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stateValue = "STOPPED";
    this.abortPoll?.();
    this.refresher.stop();
    await this.loopDone.catch(() => {});
    await this.refresher.settled();
    await this.roleWrites;
    await this.acks.settled();
    this.ownWal.close();
    await this.server?.close();
    await this.lock?.release();
  }
}
