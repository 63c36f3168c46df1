/**
 * `dr promote`: turns a follower into a leader.
 *   1. Reach the peers (the other followers' endpoints): learn their epochs, pick the new epoch
 *      E' = max(all epochs seen) + 1, and FENCE them at E' (each records E' durably and from then
 *      on refuses the old leader).
 *   2. Catch up: pull from each fenced peer every entry beyond our own tail (hash chain checked,
 *      appended durably), so the promoted WAL holds every acknowledged decision.
 *   3. Require that this node plus the fenced peers reach the promotion quorum (n − required + 1
 *      followers): that set intersects every set of followers that acknowledged a decision, and
 *      leaves the old leader fewer followers than it needs. Otherwise refuse (exit 8) unless --force.
 *   4. Materialize the workspace (base snapshot + the WAL after it; the task files, folders and
 *      ledger rows of decisions newer than the snapshot from the WAL), raise the epoch durably to
 *      E', write role=leader; best effort, fence the old leader too.
 */
import { runIdProblem, type Workspace } from "../workspace/layout.js";
import { durableAppend } from "../workspace/durable.js";
import { acquireLock, describeHolder, readLock } from "../workspace/lock.js";
import { counted } from "../workspace/counted.js";
import { ExitCode, UserError } from "../errors/errors.js";
import { materializeFromWal } from "../orchestrator/materialize.js";
import { loadState } from "../checkpoint/load-state.js";
import { type AckPolicyName, ReplicationError, parseAckPolicy, promotionQuorum } from "./ack-policy.js";
import { GENESIS_HASH, IntegrityError, type ChainTail, verifyPrefix } from "../wal/continuation.js";
import { listWalRunFiles } from "../wal/run-files.js";
import { repairTornTail } from "../wal/tail-repair.js";
import { Peer, errorText } from "./client.js";
import { announcedEpochProblem, raiseEpoch, readEpoch } from "./epoch.js";
import { readRole, writeRole } from "../workspace/replication-role.js";
import { WalSource } from "./wal-source.js";

export interface PromoteOptions {
  ws: Workspace;
  token: string | null;
  tlsCa?: string | Buffer;
  /** Peer follower endpoints; default: the other followers the leader reported. */
  peers?: string[];
  /** Where the new leader will answer, announced to the fenced peers so they re-point. */
  newLeaderUrl?: string;
  force: boolean;
  log: (line: string) => void;
  /** Rebuilds non-WAL state from the stored base snapshot (DR restore), when one is held. */
  materialize?: (ws: Workspace) => Promise<string | null>;
  timeoutMs?: number;
}

export interface PeerReport {
  url: string;
  reached: boolean;
  epoch: number | null;
  fetched_entries: number;
  error: string | null;
}

export interface PromoteResult {
  ok: true;
  sdd: string;
  epoch: number;
  previous_epoch: number;
  policy: string;
  followers_configured: number;
  promotion_quorum: number;
  reached: number;
  forced: boolean;
  peers: PeerReport[];
  old_leader: { url: string | null; fenced: boolean; error: string | null };
  wal: Array<{ run_id: string; last_seq: number }>;
  base_snapshot: string | null;
  /** What the WAL held that the workspace's files lacked (written before the role changes). */
  from_wal: { task_files_written: number; task_files_moved: number; ledger_rows_written: number };
  warnings: string[];
}

async function localTails(ws: Workspace): Promise<Map<string, ChainTail>> {
  const src = new WalSource(ws);
  await src.refresh();
  const out = new Map<string, ChainTail>();
  for (const r of src.listRuns()) {
    out.set(r.run_id, {
      seq: r.last_seq,
      hash: r.last_seq < 0 ? GENESIS_HASH : (r.last_hash ?? GENESIS_HASH),
    });
  }
  src.close();
  return out;
}

/** Pulls from `peer` every entry of every run beyond our tails; returns how many were appended. */
async function catchUpFrom(
  ws: Workspace,
  peer: Peer,
  tails: Map<string, ChainTail>,
  timeoutMs: number,
): Promise<number> {
  const list = await peer.json<{ runs: Array<{ run_id: string; last_seq: number }> }>("GET", "/wal", {
    timeoutMs,
  });
  let fetched = 0;
  for (const run of list.value.runs) {
    const problem = runIdProblem(run.run_id);
    if (problem)
      throw new ReplicationError(
        `leader ${peer.o.baseUrl} lists a WAL run: ${problem}: nothing fetched from it`,
      );
  }
  for (const run of list.value.runs) {
    for (;;) {
      const tail = tails.get(run.run_id) ?? { seq: -1, hash: GENESIS_HASH };
      if (tail.seq >= run.last_seq) break;
      const r = await peer.call(
        "GET",
        `/wal/${encodeURIComponent(run.run_id)}?from_seq=${tail.seq + 1}&limit=1000&wait_ms=0`,
        {
          timeoutMs,
        },
      );
      if (r.status !== 200) throw new Error(`GET /wal/${run.run_id}: HTTP ${r.status}: ${errorText(r.body)}`);
      const lines = r.body.split("\n").filter((l) => l.length > 0);
      if (lines.length === 0) break;
      const v = verifyPrefix(run.run_id, tail, lines);
      if (v.valid > 0) {
        await durableAppend(ws.walFile(run.run_id), lines.slice(0, v.valid).join("\n") + "\n");
        tails.set(run.run_id, v.tail);
        fetched += v.valid;
      }
      if (v.error) throw v.error;
    }
  }
  return fetched;
}

type Role = Awaited<ReturnType<typeof readRole>>;
type EpochState = Awaited<ReturnType<typeof readEpoch>>;

/** Throws unless this workspace is a follower fit to lead; a forced integrity error becomes a warning. */
function checkPromotable(o: PromoteOptions, role: Role, before: EpochState, warnings: string[]): void {
  if (role.role !== "follower") {
    throw new ReplicationError(
      before.superseded_by !== null
        ? `${o.ws.root} is a former leader fenced by epoch ${before.superseded_by}; it cannot be promoted: re-join it as a follower (replicate follow --rebootstrap)`
        : `${o.ws.root} is already a leader (epoch ${before.epoch}); nothing to promote`,
    );
  }
  if (role.bootstrapping)
    throw new ReplicationError(
      `${o.ws.root} never finished its bootstrap from ${role.leader_url ?? "its leader"}: it holds no replica to promote; promote another follower`,
    );
  if (role.integrity_error) {
    if (!o.force) {
      throw new ReplicationError(
        `this follower stopped on an integrity error (${role.integrity_error}); promote another follower, or pass --force`,
      );
    }
    warnings.push(`promoted despite an integrity error: ${role.integrity_error}`);
  }
}

interface PromotionPlan {
  policy: AckPolicyName;
  configured: NonNullable<Role["cluster"]>["followers"];
  peerUrls: string[];
  followerCount: number;
  quorum: number;
}

/** Which peers to reach and how many followers (this one included) the promotion must reach. */
function planPromotion(o: PromoteOptions, role: Role, warnings: string[]): PromotionPlan {
  const policy: AckPolicyName = role.cluster ? parseAckPolicy(role.cluster.policy) : "LEADER_ONLY";
  const configured = role.cluster?.followers ?? [];
  const peerUrls =
    o.peers && o.peers.length > 0
      ? o.peers
      : configured.filter((f) => f.name !== role.region && f.url).map((f) => f.url as string);
  // Without what the leader reported (it died before this follower asked), be conservative:
  // every named peer must be reached.
  const followerCount = role.cluster ? Math.max(configured.length, 1) : peerUrls.length + 1;
  const quorum = role.cluster ? promotionQuorum(policy, followerCount) : followerCount;
  if (!role.cluster)
    warnings.push("the leader's policy is unknown to this follower: every --peer must be reached");
  if (peerUrls.length > 0 && !o.token)
    throw new ReplicationError("reaching peers needs --token-file (or BERNSTEIN_REPLICATION_TOKEN)");
  return { policy, configured, peerUrls, followerCount, quorum };
}

interface FencedPeers {
  peers: Peer[];
  reports: PeerReport[];
  newEpoch: number;
}

/** Step 1: learns the peers' epochs, chooses the new epoch, fences every peer that answered. */
async function fencePeers(
  o: PromoteOptions,
  before: EpochState,
  peerUrls: string[],
  timeoutMs: number,
): Promise<FencedPeers> {
  let newEpoch = before.epoch;
  const reports: PeerReport[] = peerUrls.map((url) => ({
    url,
    reached: false,
    epoch: null,
    fetched_entries: 0,
    error: null,
  }));
  const peers = peerUrls.map(
    (url) => new Peer({ baseUrl: url, token: o.token ?? "", ca: o.tlsCa, epoch: () => newEpoch }),
  );
  await Promise.all(
    peers.map(async (p, i) => {
      try {
        const r = await p.call("GET", "/status", { timeoutMs });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${errorText(r.body)}`);
        const problem = r.epoch === undefined ? undefined : announcedEpochProblem(r.epoch, before.epoch);
        if (problem) throw new Error(`reports epoch ${r.epoch}: ${problem}`);
        reports[i].epoch = r.epoch ?? null;
      } catch (err) {
        reports[i].error = (err as Error).message;
      }
    }),
  );
  newEpoch = Math.max(before.epoch, before.superseded_by ?? 0, ...reports.map((r) => r.epoch ?? 0)) + 1;
  await Promise.all(
    peers.map(async (p, i) => {
      if (reports[i].error) return;
      try {
        const r = await p.call("POST", "/fence", {
          body: { epoch: newEpoch, leader_url: o.newLeaderUrl },
          timeoutMs,
        });
        if (r.status !== 200) throw new Error(`fence: HTTP ${r.status}: ${errorText(r.body)}`);
        reports[i].reached = true;
        reports[i].epoch = newEpoch;
      } catch (err) {
        reports[i].error = (err as Error).message;
      }
    }),
  );
  return { peers, reports, newEpoch };
}

/** Step 2: catches up from the fenced peers (they can no longer receive anything from the old leader). */
async function catchUpFromFenced(
  o: PromoteOptions,
  fenced: FencedPeers,
  tails: Map<string, ChainTail>,
  timeoutMs: number,
  warnings: string[],
): Promise<void> {
  const { peers, reports } = fenced;
  for (let i = 0; i < peers.length; i++) {
    if (!reports[i].reached) continue;
    try {
      reports[i].fetched_entries = await catchUpFrom(o.ws, peers[i], tails, timeoutMs);
      if (reports[i].fetched_entries > 0)
        o.log(`dr promote: fetched ${reports[i].fetched_entries} entries from ${reports[i].url}`);
    } catch (err) {
      reports[i].error = err instanceof IntegrityError ? `integrity: ${err.message}` : (err as Error).message;
      warnings.push(`catch-up from ${reports[i].url} failed: ${reports[i].error}`);
    }
  }
}

/** Step 3: the promotion quorum; returns how many followers were reached (this one included). */
function checkQuorum(
  o: PromoteOptions,
  plan: PromotionPlan,
  reports: PeerReport[],
  warnings: string[],
): number {
  const reached = 1 + reports.filter((r) => r.reached && !r.error).length;
  if (reached < plan.quorum) {
    const msg = `promotion reached ${reached} of ${counted(plan.followerCount, "follower")} (this one included); a promotion under ${plan.policy} must reach ${plan.quorum}: an acknowledged decision may be missing and the old leader may still commit`;
    if (!o.force)
      throw new ReplicationError(`${msg}; bring the peers up (--peer URL) or pass --force`, {
        peers: reports,
      });
    warnings.push(`forced: ${msg}`);
  }
  return reached;
}

/** Step 4: materializes the workspace, raises the epoch durably, writes role=leader. */
async function becomeLeader(o: PromoteOptions, role: Role, newEpoch: number, warnings: string[]) {
  const { ws } = o;
  const base = o.materialize ? await o.materialize(ws) : null;
  // The snapshot predates the newest decisions: their task files, folders and ledger rows come
  // from the WAL, so `status` and `doctor` agree with what the old leader reported.
  const fromWal = await materializeFromWal(ws, (await loadState(ws)).state);
  warnings.push(...fromWal.problems);
  const after = await raiseEpoch(ws, newEpoch - 1);
  await writeRole(ws, {
    role: "leader",
    region: role.region,
    promoted_at: new Date().toISOString(),
    cluster: role.cluster ?? null,
  });
  return { base, fromWal, after };
}

/** Best effort: fences the old leader at the new epoch so it stops committing if it is still up. */
async function fenceOldLeader(
  o: PromoteOptions,
  role: Role,
  epoch: number,
  timeoutMs: number,
): Promise<PromoteResult["old_leader"]> {
  const old = { url: role.leader_url ?? null, fenced: false, error: null as string | null };
  if (!old.url) return { ...old, error: "its URL is unknown to this follower" };
  if (!o.token) return { ...old, error: "no token to reach it (--token-file)" };
  try {
    const p = new Peer({ baseUrl: old.url, token: o.token, ca: o.tlsCa, epoch: () => epoch });
    const r = await p.call("POST", "/fence", {
      body: { epoch },
      timeoutMs: Math.min(timeoutMs, 2000),
    });
    old.fenced = r.status === 200 || r.status === 409;
    if (!old.fenced) old.error = `POST /fence: HTTP ${r.status}: ${errorText(r.body)}`;
  } catch (err) {
    old.error = (err as Error).message;
  }
  return old;
}

export async function promote(o: PromoteOptions): Promise<PromoteResult> {
  const { ws } = o;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const held = await readLock(ws);
  if (held.state === "held") {
    throw new UserError(
      `${ws.shownRoot} is in use by ${describeHolder(held.info)}; stop its follower process before promoting it`,
      ExitCode.LOCKED,
    );
  }
  const lock = await acquireLock(ws, "dr promote");
  try {
    const role = await readRole(ws);
    const before = await readEpoch(ws);
    const warnings: string[] = [];
    checkPromotable(o, role, before, warnings);
    const plan = planPromotion(o, role, warnings);

    for (const run of await listWalRunFiles(ws.walDir).catch(() => []))
      await repairTornTail(run.file, run.run_id);
    const tails = await localTails(ws);

    const fenced = await fencePeers(o, before, plan.peerUrls, timeoutMs);
    await catchUpFromFenced(o, fenced, tails, timeoutMs, warnings);
    const reached = checkQuorum(o, plan, fenced.reports, warnings);
    const { base, fromWal, after } = await becomeLeader(o, role, fenced.newEpoch, warnings);
    const old = await fenceOldLeader(o, role, after.epoch, timeoutMs);
    return {
      ok: true,
      sdd: ws.root,
      epoch: after.epoch,
      previous_epoch: before.epoch,
      policy: plan.policy,
      followers_configured: plan.configured.length,
      promotion_quorum: plan.quorum,
      reached,
      forced: o.force && reached < plan.quorum,
      peers: fenced.reports,
      old_leader: old,
      wal: [...tails].map(([run_id, t]) => ({ run_id, last_seq: t.seq })),
      base_snapshot: base,
      from_wal: {
        task_files_written: fromWal.written.length,
        task_files_moved: fromWal.moved.length,
        ledger_rows_written: fromWal.ledger_rows,
      },
      warnings,
    };
  } finally {
    await lock.release();
  }
}
