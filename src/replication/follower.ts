/**
 * The follower: bootstraps from the leader's base snapshot, then pulls WAL entries in batches,
 * checks that each continues its run's hash chain, appends them durably (byte-identical lines) to
 * its own WAL, and acknowledges the highest durable position. A chain break or tampered entry is
 * an integrity error: it stops applying, records the error durably, reports it (status, ack, log)
 * and re-bootstraps only when told (`--rebootstrap`). It refuses a leader whose epoch is older than
 * its own, adopts a newer one durably, and serves its own status, metrics and WAL.
 */
import type { IncomingMessage } from "node:http";
import { open, readdir, rename, stat } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../errors/errors.js";
import { durableAppend, durableMkdir, fsyncDir } from "../workspace/durable.js";
import { type Workspace, initWorkspace } from "../workspace/layout.js";
import { lastBackupInfo } from "./backup-info.js";
import { type ChainTail, GENESIS_HASH, IntegrityError, verifyPrefix } from "./chain.js";
import { Peer, TransportError, errorText, readAll } from "./client.js";
import { adoptEpoch, announcedEpochProblem, readEpoch, replicationDir } from "./epoch.js";
import { evaluateFailover, type FailoverEvaluation, type NodeState, writeRunbook } from "./failover.js";
import { DEFAULT_THRESHOLDS, type HealthThresholds } from "./health.js";
import { MetricsText } from "./metrics.js";
import { type RoleState, readRole, writeRole } from "./role.js";
import {
  type ConnectionLimits,
  HttpError,
  type NodeHandlers,
  type RunningServer,
  startServer,
} from "./server.js";
import { utcStamp } from "./failover.js";
import { WalSource } from "./wal-source.js";
import { ReplicationError } from "./ack-policy.js";
import { type WorkspaceLock, acquireLock } from "../workspace/lock.js";

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
  installSnapshot?: (stream: IncomingMessage, ws: Workspace) => Promise<Record<string, number>>;
  /** Stores a refreshed base snapshot (kept for promotion); returns its WAL positions. */
  storeSnapshot?: (
    stream: IncomingMessage,
    ws: Workspace,
  ) => Promise<{ file: string; wal_positions: Record<string, number> }>;
}

export type FollowerState =
  "BOOTSTRAPPING" | "FOLLOWING" | "STOPPED_INTEGRITY" | "REFUSED_EPOCH" | "LEADER_UNREACHABLE" | "STOPPED";

class EpochRefusal extends Error {}

/** Cuts a torn last line (an append interrupted by a crash) so the next append starts clean. */
export async function repairTornTail(file: string): Promise<boolean> {
  const st = await stat(file).catch(() => undefined);
  if (!st || st.size === 0) return false;
  const fh = await open(file, "r+");
  try {
    const chunk = Buffer.alloc(Math.min(st.size, 1 << 16));
    let end = st.size;
    for (;;) {
      const start = Math.max(0, end - chunk.length);
      const { bytesRead } = await fh.read(chunk, 0, end - start, start);
      const nl = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (nl >= 0) {
        const keep = start + nl + 1;
        if (keep === st.size) return false;
        await fh.truncate(keep);
        await fh.sync();
        return true;
      }
      if (start === 0) {
        await fh.truncate(0);
        await fh.sync();
        return true;
      }
      end = start;
    }
  } finally {
    await fh.close();
  }
}

export class ReplicationFollower {
  private peer: Peer;
  private readonly ownWal: WalSource;
  private readonly local = new Map<string, ChainTail>();
  private readonly leaderTails = new Map<string, number>();
  private epoch = 1;
  private role!: RoleState;
  private server: RunningServer | null = null;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private abortPoll: (() => void) | null = null;
  private stateValue: FollowerState = "BOOTSTRAPPING";
  private leaderFailures = 0;
  private lastError: string | null = null;
  private lastContactAt: number | null = null;
  private leaderEpoch: number | null = null;
  private caughtUpAt: number | null = null;
  private lastSnapshotAt = 0;
  /** A snapshot refresh runs beside the pull loop (a big or slow one must not stall the WAL). */
  private refreshing: Promise<void> | null = null;
  private abortRefresh: (() => void) | null = null;
  /** Role writes one after the other: the loop, a refresh and a fence each change a field. */
  private roleWrites: Promise<unknown> = Promise.resolve();
  private lastClusterAt = 0;
  private lastListAt = 0;
  /** Lag is unknown until the leader's runs were listed once. */
  private listedOnce = false;
  private runsCache: string[] = [];
  private ackInFlight: Promise<void> | null = null;
  private ackDirty = false;
  private lock: WorkspaceLock | null = null;
  private lastDecision: FailoverEvaluation["decision"] = "NO_ACTION";
  private lastRunbook: string | null = null;
  private readonly thresholds: HealthThresholds;
  readonly counters = { entries_applied: 0, batches_applied: 0, acks_sent: 0 };

  private constructor(private readonly o: FollowerOptions) {
    this.peer = this.makePeer(o.leaderUrl);
    this.ownWal = new WalSource(o.ws);
    this.thresholds = o.thresholds ?? DEFAULT_THRESHOLDS;
  }

  private makePeer(url: string): Peer {
    return new Peer({
      baseUrl: url,
      token: this.o.token,
      ca: this.o.tlsCa,
      epoch: () => this.epoch,
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

  /** Bootstrap when needed, then read the local WAL tails. */
  private async prepare(): Promise<void> {
    const { ws } = this.o;
    await initWorkspace(ws.root);
    this.lock = await acquireLock(ws, "replicate follow");
    this.role = await readRole(ws);
    const hasWal = (await readdir(ws.walDir).catch(() => [] as string[])).some((n) =>
      n.endsWith(".wal.jsonl"),
    );
    const isFollower = this.role.role === "follower";
    if (!isFollower && hasWal && !this.o.rebootstrap) {
      throw new ReplicationError(
        `${ws.root} holds a leader's WAL; pass --rebootstrap to replace it with ${this.o.leaderUrl}'s state (the old WAL is kept in runtime/replication/quarantine-*)`,
      );
    }
    if (isFollower && this.role.region && this.role.region !== this.o.region && !this.o.rebootstrap) {
      throw new ReplicationError(
        `${ws.root} follows as region "${this.role.region}", not "${this.o.region}"`,
      );
    }
    if (!isFollower || this.o.rebootstrap) {
      await this.bootstrap(hasWal);
    } else if (this.role.leader_url !== this.o.leaderUrl) {
      await this.updateRole((role) => ({ ...role, leader_url: this.o.leaderUrl }));
    }
    this.epoch = (await readEpoch(ws)).epoch;
    for (const name of await readdir(ws.walDir)) {
      if (name.endsWith(".wal.jsonl") && (await repairTornTail(path.join(ws.walDir, name)))) {
        this.o.log(`replicate follow: cut a torn last line of ${name}`);
      }
    }
    await this.ownWal.refresh();
    for (const r of this.ownWal.listRuns()) {
      this.local.set(r.run_id, {
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
  }

  private async bootstrap(hadWal: boolean): Promise<void> {
    const { ws } = this.o;
    if (hadWal) {
      const q = path.join(replicationDir(ws), `quarantine-${utcStamp()}`);
      await durableMkdir(q);
      await rename(ws.walDir, path.join(q, "wal"));
      await fsyncDir(q);
      await durableMkdir(ws.walDir);
      await fsyncDir(path.dirname(ws.walDir));
      this.o.log(`replicate follow: moved the previous WAL to ${path.relative(ws.root, q)}/wal`);
    }
    let basePositions: Record<string, number> | null = null;
    let bootstrapError: string | null = null;
    // A leader that is not up yet, or a connection lost before or during the snapshot, is tried
    // again every --retry-ms (each failure logged) instead of ending the follower.
    for (let attempt = 1; this.o.installSnapshot; attempt++) {
      const retry = async (what: string, err: Error): Promise<void> => {
        this.o.log(`replicate follow: ${what} (${attempt}): ${err.message}; retrying`);
        await this.sleep(this.o.retryMs ?? 1000);
      };
      let opened: Awaited<ReturnType<Peer["open"]>>;
      try {
        opened = await this.peer.open("GET", "/snapshot", { timeoutMs: 600_000 });
      } catch (err) {
        if (!(err instanceof TransportError) || this.stopped) throw err;
        await retry("leader contact failed", err);
        continue;
      }
      const { res, epoch } = opened;
      if (epoch !== undefined) this.leaderEpoch = epoch;
      if (res.statusCode === 200) {
        // The restore swaps the whole folder (our lock file goes with the old one): take it again.
        await this.lock?.release();
        this.lock = null;
        let broken: IntegrityError | null = null;
        let dropped: Error | null = null;
        try {
          basePositions = await this.o.installSnapshot(res, ws);
        } catch (err) {
          if (err instanceof IntegrityError)
            broken = err; // the WAL was cut before the bad entry
          // Not a bad archive (a UserError): a lost connection, and the atomic restore left the
          // workspace as it was.
          else if (!(err instanceof UserError) && !this.stopped) dropped = err as Error;
          else throw err;
        }
        await initWorkspace(ws.root);
        this.lock = await acquireLock(ws, "replicate follow");
        if (dropped) {
          await retry("base snapshot lost mid-way", dropped);
          continue;
        }
        if (broken) bootstrapError = `base snapshot: ${broken.message}`;
      } else {
        const body = await readAll(res);
        if (res.statusCode === 401)
          throw new ReplicationError(`leader ${this.o.leaderUrl} refused the token`);
        this.o.log(
          `replicate follow: no base snapshot (${res.statusCode}: ${errorText(body)}); replicating the WAL only`,
        );
      }
      break;
    }
    if (this.leaderEpoch === null) {
      const r = await this.peer.call("GET", "/status", { timeoutMs: 10_000 });
      if (r.status === 401) throw new ReplicationError(`leader ${this.o.leaderUrl} refused the token`);
      this.leaderEpoch = r.epoch ?? 1;
    }
    await adoptEpoch(ws, this.leaderEpoch);
    await this.updateRole(() => ({
      role: "follower",
      leader_url: this.o.leaderUrl,
      region: this.o.region,
      integrity_error: bootstrapError,
      base_snapshot: basePositions
        ? { file: "", fetched_at: new Date().toISOString(), wal_positions: basePositions }
        : null,
    }));
    this.lastSnapshotAt = Date.now();
    this.o.log(`replicate follow: bootstrapped from ${this.o.leaderUrl} at epoch ${this.leaderEpoch}`);
  }

  private async loop(): Promise<void> {
    const retryMs = this.o.retryMs ?? 1000;
    while (!this.stopped) {
      if (this.stateValue === "STOPPED_INTEGRITY") {
        // Keep telling the leader (its status shows the error per follower); apply nothing.
        await this.ack().catch(() => {});
        await this.evaluate();
        await this.sleep(retryMs);
        continue;
      }
      try {
        await this.cycle();
        if (this.stateValue !== "FOLLOWING")
          this.o.log(`replicate follow: following ${this.peer.o.baseUrl} at epoch ${this.epoch}`);
        this.stateValue = "FOLLOWING";
        this.leaderFailures = 0;
        this.lastError = null;
        this.maybeRefreshSnapshot();
        await this.maybeLearnCluster();
      } catch (err) {
        if (this.stopped) break;
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
          if (this.leaderFailures >= this.thresholds.maxRetries) this.stateValue = "LEADER_UNREACHABLE";
          await this.sleep(retryMs);
        }
      }
      await this.evaluate();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.abortPoll = null;
        resolve();
      }, ms);
      this.abortPoll = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private checkEpoch(leaderEpoch: number | undefined): Promise<void> | void {
    if (leaderEpoch === undefined) return;
    this.leaderEpoch = leaderEpoch;
    this.lastContactAt = Date.now();
    if (leaderEpoch < this.epoch) {
      throw new EpochRefusal(
        `leader ${this.peer.o.baseUrl} is at epoch ${leaderEpoch}, older than ours (${this.epoch}): a newer leader was promoted; refusing its entries`,
      );
    }
    const problem = announcedEpochProblem(leaderEpoch, this.epoch);
    if (problem) {
      throw new EpochRefusal(
        `leader ${this.peer.o.baseUrl} announces epoch ${leaderEpoch}: ${problem}; refusing its entries`,
      );
    }
    if (leaderEpoch > this.epoch) {
      return adoptEpoch(this.o.ws, leaderEpoch).then((s) => {
        this.epoch = s.epoch;
        this.o.log(`replicate follow: adopted epoch ${s.epoch} from the leader`);
      });
    }
  }

  /**
   * One round: list runs (at most once a second, or after an empty long-poll, which may mean a new
   * run), pull every run that is behind, or long-poll the newest run when caught up.
   */
  private async cycle(): Promise<void> {
    if (this.runsCache.length === 0 || Date.now() - this.lastListAt >= 1000) {
      const list = await this.peer.call("GET", "/wal", { timeoutMs: 10_000 });
      await this.checkEpoch(list.epoch);
      if (list.status === 409)
        throw new EpochRefusal(`leader ${this.peer.o.baseUrl} refuses: ${errorText(list.body)}`);
      if (list.status !== 200)
        throw new TransportError(`GET /wal: HTTP ${list.status}: ${errorText(list.body)}`, list.status);
      const runs = (JSON.parse(list.body) as { runs: Array<{ run_id: string; last_seq: number }> }).runs;
      this.runsCache = runs.map((r) => r.run_id);
      for (const r of runs) this.leaderTails.set(r.run_id, r.last_seq);
      this.lastListAt = Date.now();
      this.listedOnce = true;
    }
    let pulled = false;
    for (const run of this.runsCache) {
      while (!this.stopped && (this.local.get(run)?.seq ?? -1) < (this.leaderTails.get(run) ?? -1)) {
        if ((await this.pull(run, 0)) === 0) break;
        pulled = true;
      }
    }
    if (this.lagEntries() === 0) this.caughtUpAt = Date.now();
    if (pulled || this.stopped) return;
    this.ackSoon(); // keeps the leader's view of us fresh while idle
    const newest = this.runsCache.at(-1);
    if (!newest) {
      this.lastListAt = 0;
      await this.sleep(Math.min(200, this.o.retryMs ?? 1000));
      return;
    }
    // Caught up: long-poll the newest run; keep pulling while it keeps growing.
    let n = await this.pull(newest, this.o.waitMs ?? 5000);
    if (n === 0) this.lastListAt = 0;
    while (
      n > 0 &&
      !this.stopped &&
      (this.local.get(newest)?.seq ?? -1) < (this.leaderTails.get(newest) ?? -1)
    ) {
      n = await this.pull(newest, 0);
    }
    if (this.lagEntries() === 0) this.caughtUpAt = Date.now();
  }

  /** Pulls one batch of `runId`; returns the number of entries appended. */
  private async pull(runId: string, waitMs: number): Promise<number> {
    const tail = this.local.get(runId) ?? { seq: -1, hash: GENESIS_HASH };
    const q = `/wal/${encodeURIComponent(runId)}?from_seq=${tail.seq + 1}&limit=${this.o.batchSize ?? 50}&wait_ms=${waitMs}`;
    const { res, epoch, abort } = await this.peer.open("GET", q, { timeoutMs: waitMs + 15_000 });
    this.abortPoll = abort;
    let body: string;
    try {
      await this.checkEpoch(epoch);
      body = await readAll(res);
    } catch (err) {
      res.resume();
      throw err;
    } finally {
      this.abortPoll = null;
    }
    if (res.statusCode === 409)
      throw new EpochRefusal(`leader ${this.peer.o.baseUrl} refuses: ${errorText(body)}`);
    if (res.statusCode !== 200)
      throw new TransportError(`GET ${q}: HTTP ${res.statusCode}: ${errorText(body)}`, res.statusCode);
    const tailHeader = Number(res.headers["x-bernstein-tail-seq"]);
    if (Number.isSafeInteger(tailHeader)) this.leaderTails.set(runId, tailHeader);
    const lines = body.split("\n").filter((l) => l.length > 0);
    if (lines.length === 0) return 0;
    const v = verifyPrefix(runId, tail, lines);
    if (v.valid > 0) {
      // Only the verified prefix is written; a bad line and everything after it never reach the WAL.
      await durableAppend(this.o.ws.walFile(runId), lines.slice(0, v.valid).join("\n") + "\n");
      this.local.set(runId, v.tail);
      this.counters.entries_applied += v.valid;
      this.counters.batches_applied++;
      this.ackSoon();
    }
    if (v.error) throw v.error;
    return v.valid;
  }

  private positions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [run, t] of this.local) out[run] = t.seq;
    return out;
  }

  /**
   * Acknowledges in the background so the next pull starts at once; at most one ack is in flight
   * and a newer position waiting behind it is sent right after (acks carry all runs' positions).
   */
  private ackSoon(): void {
    if (this.ackInFlight) {
      this.ackDirty = true;
      return;
    }
    this.ackInFlight = this.ack()
      .catch((err: Error) => {
        this.lastError = `ack: ${err.message}`;
      })
      .finally(() => {
        this.ackInFlight = null;
        if (this.ackDirty && !this.stopped) {
          this.ackDirty = false;
          this.ackSoon();
        }
      });
  }

  private async ack(): Promise<void> {
    const r = await this.peer.call("POST", "/ack", {
      body: {
        region: this.o.region,
        positions: this.positions(),
        integrity_error: this.role.integrity_error ?? null,
      },
      timeoutMs: 10_000,
    });
    await this.checkEpoch(r.epoch);
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

  private maybeRefreshSnapshot(): void {
    const every = this.o.snapshotIntervalMs ?? 0;
    if (!this.o.storeSnapshot || every <= 0 || this.refreshing) return;
    if (Date.now() - this.lastSnapshotAt < every) return;
    this.lastSnapshotAt = Date.now();
    this.refreshing = this.refreshSnapshot(this.o.storeSnapshot).finally(() => {
      this.refreshing = null;
      this.abortRefresh = null;
      // The next refresh is `every` after this one ended, not after it began.
      this.lastSnapshotAt = Date.now();
    });
  }

  private async refreshSnapshot(store: NonNullable<FollowerOptions["storeSnapshot"]>): Promise<void> {
    try {
      const { res } = await this.peer.open("GET", "/snapshot", {
        timeoutMs: 600_000,
        onAbortable: (abort) => (this.abortRefresh = abort),
      });
      if (res.statusCode !== 200) {
        this.o.log(
          `replicate follow: snapshot refresh: HTTP ${res.statusCode}: ${errorText(await readAll(res))}`,
        );
        return;
      }
      const stored = await store(res, this.o.ws);
      if (this.stopped) return;
      const base = {
        file: stored.file,
        fetched_at: new Date().toISOString(),
        wal_positions: stored.wal_positions,
      };
      await this.updateRole((role) => ({ ...role, base_snapshot: base }));
    } catch (err) {
      if (!this.stopped) this.o.log(`replicate follow: snapshot refresh failed: ${(err as Error).message}`);
    }
  }

  lagEntries(): number {
    let lag = 0;
    for (const [run, tail] of this.leaderTails) {
      const mine = this.local.get(run)?.seq ?? -1;
      if (tail > mine) lag += tail - mine;
    }
    return lag;
  }

  private nodeStates(): NodeState[] {
    const lag = this.lagEntries();
    const pos = this.position();
    return [
      {
        name: "leader",
        role: "leader",
        url: this.peer.o.baseUrl,
        epoch: this.leaderEpoch,
        wal_position: null,
        health:
          this.leaderFailures >= this.thresholds.maxRetries
            ? "UNREACHABLE"
            : this.lastContactAt
              ? "HEALTHY"
              : "UNKNOWN",
        lag_entries: 0,
        lag_seconds: 0,
      },
      {
        name: this.o.region,
        role: "follower",
        url: this.url,
        sdd: this.o.ws.root,
        epoch: this.epoch,
        wal_position: pos,
        health: this.role.integrity_error
          ? "LAGGING"
          : lag > this.thresholds.maxLagEntries
            ? "LAGGING"
            : "HEALTHY",
        lag_entries: lag,
        lag_seconds: this.lagSeconds(),
        note: this.role.integrity_error ? `integrity error: ${this.role.integrity_error}` : undefined,
      },
    ];
  }

  private lagSeconds(): number | null {
    if (this.lagEntries() === 0) return 0;
    return this.caughtUpAt === null ? null : (Date.now() - this.caughtUpAt) / 1000;
  }

  private position(): { run_id: string; seq: number } | null {
    const runs = [...this.local.entries()]
      .filter(([, t]) => t.seq >= 0)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const last = runs.at(-1);
    return last ? { run_id: last[0], seq: last[1].seq } : null;
  }

  private async evaluate(): Promise<FailoverEvaluation> {
    const ev = evaluateFailover({
      perspective: "follower",
      policy: null,
      thresholds: this.thresholds,
      leaderFailures: this.leaderFailures,
      nodes: this.nodeStates(),
      integrityErrors: this.role.integrity_error ? [this.role.integrity_error] : [],
    });
    if (ev.decision === "FAILOVER_RECOMMENDED" && this.lastDecision !== "FAILOVER_RECOMMENDED") {
      try {
        this.lastRunbook = await writeRunbook(this.o.ws, {
          perspective: "follower",
          policy: null,
          thresholds: this.thresholds,
          leaderFailures: this.leaderFailures,
          nodes: this.nodeStates(),
          lastBackup: await lastBackupInfo(this.o.ws),
          evaluation: ev,
          writtenBy: `follower ${this.o.region}`,
          tokenFile: this.o.tokenFile,
        });
        this.o.log(
          `replicate follow: FAILOVER_RECOMMENDED: ${ev.reasons.join("; ")}; runbook: ${this.lastRunbook}`,
        );
      } catch (err) {
        this.o.log(`replicate follow: could not write the runbook: ${(err as Error).message}`);
      }
    }
    this.lastDecision = ev.decision;
    return ev;
  }

  async status(): Promise<Record<string, unknown>> {
    const ev = evaluateFailover({
      perspective: "follower",
      policy: null,
      thresholds: this.thresholds,
      leaderFailures: this.leaderFailures,
      nodes: this.nodeStates(),
      integrityErrors: this.role.integrity_error ? [this.role.integrity_error] : [],
    });
    const backup = await lastBackupInfo(this.o.ws);
    const lag = this.lagEntries();
    return {
      role: "follower",
      region: this.o.region,
      url: this.url,
      leader_url: this.peer.o.baseUrl,
      epoch: this.epoch,
      state: this.stateValue,
      integrity_error: this.role.integrity_error ?? null,
      leader: {
        epoch: this.leaderEpoch,
        consecutive_failures: this.leaderFailures,
        last_contact_at: this.lastContactAt === null ? null : new Date(this.lastContactAt).toISOString(),
        last_error: this.lastError,
        tails: Object.fromEntries(this.leaderTails),
      },
      wal: {
        runs: [...this.local.entries()].map(([run_id, t]) => ({
          run_id,
          last_seq: t.seq,
          last_hash: t.seq >= 0 ? t.hash : null,
        })),
        position: this.position(),
      },
      lag: this.listedOnce ? { entries: lag, seconds: this.lagSeconds() } : { entries: null, seconds: null },
      base_snapshot: this.role.base_snapshot ?? null,
      last_backup: backup,
      rpo_estimate: this.listedOnce
        ? { entries: lag, seconds: this.lagSeconds(), basis: "this follower's lag" }
        : { entries: null, seconds: null, basis: "not in contact with the leader yet" },
      failover: { ...ev, last_runbook: this.lastRunbook },
      counters: this.counters,
    };
  }

  private async metrics(): Promise<string> {
    const m = new MetricsText();
    m.add("bernstein_replication_epoch", "gauge", "Replication epoch of this node", this.epoch);
    m.add(
      "bernstein_replication_follower_applied_entries_total",
      "counter",
      "WAL entries verified and appended",
      this.counters.entries_applied,
    );
    m.add(
      "bernstein_replication_follower_lag_entries",
      "gauge",
      "Entries behind the leader (as last seen)",
      this.lagEntries(),
      { follower: this.o.region },
    );
    m.add(
      "bernstein_replication_follower_lag_seconds",
      "gauge",
      "Seconds since this follower last held the leader's tail",
      this.lagSeconds(),
      { follower: this.o.region },
    );
    m.add(
      "bernstein_replication_integrity_error",
      "gauge",
      "1 when an integrity error stopped applying",
      this.role.integrity_error ? 1 : 0,
    );
    m.add(
      "bernstein_replication_leader_consecutive_failures",
      "gauge",
      "Consecutive failed contacts with the leader",
      this.leaderFailures,
    );
    const b = await lastBackupInfo(this.o.ws);
    m.add(
      "bernstein_replication_last_backup_age_seconds",
      "gauge",
      "Age of the last good backup",
      b?.age_seconds ?? null,
    );
    return m.toString();
  }

  private handlers(): NodeHandlers {
    return {
      epoch: () => this.epoch,
      checkEpoch: async (ctx) => {
        if (ctx.epoch !== undefined && ctx.epoch > this.epoch) {
          this.epoch = (await adoptEpoch(this.o.ws, ctx.epoch)).epoch;
        }
        return undefined;
      },
      status: () => this.status(),
      metrics: () => this.metrics(),
      wal: this.ownWal,
      fence: async (body) => {
        const b = body as { epoch?: unknown; leader_url?: unknown };
        const problem = announcedEpochProblem(b?.epoch, this.epoch);
        if (problem)
          throw new HttpError(400, `fence: epoch ${JSON.stringify(b?.epoch) ?? "missing"}: ${problem}`);
        const epoch = b.epoch as number;
        if (epoch < this.epoch)
          throw new ReplicationError(`fence at epoch ${epoch} is older than ours (${this.epoch})`);
        this.epoch = (await adoptEpoch(this.o.ws, epoch)).epoch;
        if (typeof b.leader_url === "string" && b.leader_url !== this.peer.o.baseUrl) {
          await this.updateRole((role) => ({ ...role, leader_url: b.leader_url as string }));
          this.peer = this.makePeer(b.leader_url);
          this.o.log(`replicate follow: fenced at epoch ${this.epoch}; now following ${b.leader_url}`);
        } else {
          this.o.log(`replicate follow: fenced at epoch ${this.epoch}`);
        }
        this.abortPoll?.();
        return { epoch: this.epoch, positions: this.positions() };
      },
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stateValue = "STOPPED";
    this.abortPoll?.();
    this.abortRefresh?.();
    await this.loopDone.catch(() => {});
    await this.refreshing;
    await this.roleWrites;
    await this.ackInFlight;
    this.ownWal.close();
    await this.server?.close();
    await this.lock?.release();
  }
}
