/**
 * The follower's pull side: how far each of the leader's runs goes, how far this node's WAL goes,
 * and the rounds that bring it up to the leader. Each batch is checked against its run's hash
 * chain; only the verified prefix is appended (durably, byte-identical lines) before a chain break
 * or a tampered entry is thrown as an IntegrityError.
 */
import { open } from "node:fs/promises";
import { durableAppend } from "../workspace/durable.js";
import { runIdProblem, type Workspace } from "../workspace/layout.js";
import { ORCHESTRATOR_STOPPED } from "../state/reducer.js";
import { entryTimeMs } from "../wal/entry.js";
import { scanTail } from "../wal/tail.js";
import { type ChainTail, GENESIS_HASH, IntegrityError, verifyPrefix } from "../wal/continuation.js";
import { type Peer, TransportError, errorText, readAll } from "./client.js";
import type { LeaderStop } from "./failover.js";

/** The leader is at an older (or absurd) epoch, or refuses us: nothing of it is applied. */
export class EpochRefusal extends Error {}

/** The newest entry a node holds, of any run (by the entry's own time). */
interface NewestEntry {
  run_id: string;
  seq: number;
  decision_type: string;
  timestamp: number;
  /** `output.reason` of an `orchestrator_stopped`. */
  reason: string | null;
}

/** What the newest entry is judged by, from a parsed WAL line. */
type EntryFacts = { seq: number; decision_type: string; timestamp: number; output?: unknown };

export interface PullContext {
  ws: Workspace;
  /** The leader (it changes when a fence names a new one). */
  peer: () => Peer;
  batchSize?: number;
  waitMs?: number;
  retryMs?: number;
  /** Checks the epoch a leader's answer carries (adopts a newer one; throws EpochRefusal). */
  checkEpoch: (leaderEpoch: number | undefined) => Promise<void> | void;
  isStopped: () => boolean;
  /** Sleeps `ms`, or less when the follower is fenced or stopped. */
  sleep: (ms: number) => Promise<void>;
  /** Registers how to cut the request in flight short (null: none). */
  setAbort: (abort: (() => void) | null) => void;
  /** `entries` were appended durably (in one batch). */
  onApplied: (entries: number) => void;
  /** Tells the leader our positions soon (in the background). */
  ackSoon: () => void;
}

export class WalPuller {
  /** This node's WAL: newest seq and hash per run. */
  readonly local = new Map<string, ChainTail>();
  /** The leader's newest seq per run, as last seen. */
  readonly leaderTails = new Map<string, number>();
  /** Lag is unknown until the leader's runs were listed once. */
  listedOnce = false;
  caughtUpAt: number | null = null;
  private lastListAt = 0;
  private runsCache: string[] = [];
  private newest: NewestEntry | null = null;

  constructor(private readonly c: PullContext) {}

  lagEntries(): number {
    let lag = 0;
    for (const [run, tail] of this.leaderTails) {
      const mine = this.local.get(run)?.seq ?? -1;
      if (tail > mine) lag += tail - mine;
    }
    return lag;
  }

  lagSeconds(): number | null {
    if (this.lagEntries() === 0) return 0;
    return this.caughtUpAt === null ? null : (Date.now() - this.caughtUpAt) / 1000;
  }

  /**
   * The leader's clean stop, when this node holds it: the newest entry of all it holds is an
   * `orchestrator_stopped` (the last entry a run that ends cleanly writes), and the leader listed
   * nothing this node lacks (a run it started after that stop would be missing). Null: the node
   * cannot tell a stop from a loss.
   */
  leaderStop(): LeaderStop | null {
    const n = this.newest;
    if (!n || n.decision_type !== ORCHESTRATOR_STOPPED || this.lagEntries() > 0) return null;
    return {
      run_id: n.run_id,
      seq: n.seq,
      at: new Date(entryTimeMs(n.timestamp)).toISOString(),
      reason: n.reason,
    };
  }

  /** Reads the last entry of a run of this node's WAL (at start: what a previous process pulled). */
  async noteLocalTail(runId: string, file: string): Promise<void> {
    const fh = await open(file, "r");
    try {
      const last = (await scanTail(fh)).last;
      if (last) this.noteEntry(runId, last);
    } finally {
      await fh.close();
    }
  }

  private noteEntry(runId: string, e: EntryFacts): void {
    if (this.newest && e.timestamp < this.newest.timestamp) return;
    const reason = (e.output as { reason?: unknown } | undefined)?.reason;
    this.newest = {
      run_id: runId,
      seq: e.seq,
      decision_type: e.decision_type,
      timestamp: e.timestamp,
      reason: typeof reason === "string" ? reason : null,
    };
  }

  /** Newest seq per run of this node's WAL (what an ack reports). */
  positions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [run, t] of this.local) out[run] = t.seq;
    return out;
  }

  /** This node's newest position: the last run (by name) holding an entry. */
  position(): { run_id: string; seq: number } | null {
    const runs = [...this.local.entries()]
      .filter(([, t]) => t.seq >= 0)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const last = runs.at(-1);
    return last ? { run_id: last[0], seq: last[1].seq } : null;
  }

  /**
   * One round: list runs (at most once a second, or after an empty long-poll, which may mean a new
   * run), pull every run that is behind, or long-poll the newest run when caught up.
   */
  async cycle(): Promise<void> {
    if (this.runsCache.length === 0 || Date.now() - this.lastListAt >= 1000) await this.listLeaderRuns();
    let pulled = false;
    for (const run of this.runsCache) {
      while (!this.c.isStopped() && this.isBehind(run)) {
        if ((await this.pull(run, 0)) === 0) break;
        pulled = true;
      }
    }
    if (this.lagEntries() === 0) this.caughtUpAt = Date.now();
    if (pulled || this.c.isStopped()) return;
    this.c.ackSoon(); // keeps the leader's view of us fresh while idle
    const newest = this.runsCache.at(-1);
    if (!newest) {
      this.lastListAt = 0;
      await this.c.sleep(Math.min(200, this.c.retryMs ?? 1000));
      return;
    }
    // Caught up: long-poll the newest run; keep pulling while it keeps growing.
    let n = await this.pull(newest, this.c.waitMs ?? 5000);
    if (n === 0) this.lastListAt = 0;
    while (n > 0 && !this.c.isStopped() && this.isBehind(newest)) {
      n = await this.pull(newest, 0);
    }
    if (this.lagEntries() === 0) this.caughtUpAt = Date.now();
  }

  private isBehind(run: string): boolean {
    return (this.local.get(run)?.seq ?? -1) < (this.leaderTails.get(run) ?? -1);
  }

  private async listLeaderRuns(): Promise<void> {
    const peer = this.c.peer();
    const list = await peer.call("GET", "/wal", { timeoutMs: 10_000 });
    await this.c.checkEpoch(list.epoch);
    if (list.status === 409)
      throw new EpochRefusal(`leader ${peer.o.baseUrl} refuses: ${errorText(list.body)}`);
    if (list.status !== 200)
      throw new TransportError(`GET /wal: HTTP ${list.status}: ${errorText(list.body)}`, list.status);
    const runs = (JSON.parse(list.body) as { runs: Array<{ run_id: string; last_seq: number }> }).runs;
    // A run id names a file here: one that is none (`../`, a separator) is the leader's, or a
    // man in the middle's, and stops the follower before anything is written.
    for (const r of runs) {
      const problem = runIdProblem(r.run_id);
      if (problem)
        throw new IntegrityError(
          `leader ${peer.o.baseUrl} lists a WAL run: ${problem}`,
          String(r.run_id),
          -1,
        );
    }
    this.runsCache = runs.map((r) => r.run_id);
    for (const r of runs) this.leaderTails.set(r.run_id, r.last_seq);
    this.lastListAt = Date.now();
    this.listedOnce = true;
  }

  /** Pulls one batch of `runId`; returns the number of entries appended. */
  private async pull(runId: string, waitMs: number): Promise<number> {
    const tail = this.local.get(runId) ?? { seq: -1, hash: GENESIS_HASH };
    const q = `/wal/${encodeURIComponent(runId)}?from_seq=${tail.seq + 1}&limit=${this.c.batchSize ?? 50}&wait_ms=${waitMs}`;
    const peer = this.c.peer();
    const { res, epoch, abort } = await peer.open("GET", q, { timeoutMs: waitMs + 15_000 });
    this.c.setAbort(abort);
    let body: string;
    try {
      await this.c.checkEpoch(epoch);
      body = await readAll(res);
    } catch (err) {
      res.resume();
      throw err;
    } finally {
      this.c.setAbort(null);
    }
    if (res.statusCode === 409)
      throw new EpochRefusal(`leader ${peer.o.baseUrl} refuses: ${errorText(body)}`);
    if (res.statusCode !== 200)
      throw new TransportError(`GET ${q}: HTTP ${res.statusCode}: ${errorText(body)}`, res.statusCode);
    const tailHeader = Number(res.headers["x-bernstein-tail-seq"]);
    if (Number.isSafeInteger(tailHeader)) this.leaderTails.set(runId, tailHeader);
    const lines = body.split("\n").filter((l) => l.length > 0);
    if (lines.length === 0) return 0;
    const v = verifyPrefix(runId, tail, lines);
    if (v.valid > 0) {
      // Only the verified prefix is written; a bad line and everything after it never reach the WAL.
      await durableAppend(this.c.ws.walFile(runId), lines.slice(0, v.valid).join("\n") + "\n");
      this.local.set(runId, v.tail);
      // Verified above: its fields are what the leader wrote.
      this.noteEntry(runId, JSON.parse(lines[v.valid - 1]) as EntryFacts);
      this.c.onApplied(v.valid);
    }
    if (v.error) throw v.error;
    return v.valid;
  }
}
