/**
 * `dr status` on any node: what the workspace's files say (role, epoch, fencing, WAL position,
 * last good backup) joined with what the live replication process of the workspace reports (lag
 * and health of followers, this follower's lag), and the failover evaluation on top.
 */
import type { Workspace } from "../workspace/layout.js";
import type { AckPolicyName } from "./ack-policy.js";
import { loadTokenFile } from "./auth.js";
import { type BackupInfo, lastBackupInfo } from "./backup-info.js";
import { describeBackupLogProblem, type BackupLogProblem } from "../dr/backup-log.js";
import { Peer } from "./client.js";
import { readLiveEndpoint } from "./endpoint.js";
import { readEpoch } from "./epoch.js";
import { type FailoverEvaluation, type LeaderStop, type NodeState, evaluateFailover } from "./failover.js";
import { DEFAULT_THRESHOLDS, type FollowerView, type HealthThresholds } from "./health.js";
import { rpoEstimate } from "./leader-status.js";
import { TOKEN_ENV } from "./auth.js";
import { readRole } from "../workspace/replication-role.js";
import { archiveHealth, lagIsCurrent, stoppedSince, type ArchiveHealthReport } from "../archive/health.js";
import { leftoverLocalCopies, localCopyDir, type LeftoverCopy } from "../storage/local-copy.js";
import { WalSource } from "./wal-source.js";

export interface DrStatus {
  sdd: string;
  role: "leader" | "follower";
  region: string | null;
  epoch: number;
  fenced: boolean;
  fenced_reason: string | null;
  leader_url: string | null;
  live: { url: string; pid: number; reachable: boolean; error: string | null } | null;
  policy: string | null;
  policy_state: string | null;
  policy_reason: string | null;
  wal: {
    runs: Array<{ run_id: string; last_seq: number }>;
    position: { run_id: string; seq: number } | null;
  };
  followers: FollowerView[];
  lag: { entries: number | null; seconds: number | null } | null;
  integrity_error: string | null;
  last_backup: BackupInfo | null;
  /** Lines of `runs/backups.jsonl` that are not rows (a torn append, damage): not counted above. */
  backup_log_problems: string[];
  /**
   * Local copies of remote backups that never ended (killed), in the default local-copy folder:
   * full backups on this host's disk until the next remote backup into that folder removes them.
   */
  leftover_local_copies: LeftoverCopy[];
  rpo_estimate: { entries: number | null; seconds: number | null; basis: string };
  failover: FailoverEvaluation;
  /** True when the node's policy is not met or it is fenced (exit code 8). */
  problem: boolean;
  thresholds: HealthThresholds;
  nodes: NodeState[];
  /** The workspace's WAL archiver as its status says (archiveHealth), null: none. */
  archive: ArchiveHealthReport | null;
}

async function tokenFor(explicitFile: string | undefined, recorded: string | null): Promise<string | null> {
  if (explicitFile) return loadTokenFile(explicitFile);
  if (process.env[TOKEN_ENV]) return process.env[TOKEN_ENV]!.trim();
  if (recorded) return loadTokenFile(recorded).catch(() => null);
  return null;
}

type Role = Awaited<ReturnType<typeof readRole>>;
type LiveStatus = Record<string, unknown> | null;
type WalPosition = DrStatus["wal"]["position"];
/** The leader as a live follower's `/status` reports it. */
type LiveLeader =
  | {
      epoch: number | null;
      consecutive_failures: number;
      last_contact_at: string | null;
      stopped_cleanly?: LeaderStop | null;
    }
  | undefined;

async function walRuns(ws: Workspace): Promise<DrStatus["wal"]> {
  const src = new WalSource(ws);
  await src.refresh();
  const runs = src.listRuns().map((r) => ({ run_id: r.run_id, last_seq: r.last_seq }));
  src.close();
  const newest = runs.filter((r) => r.last_seq >= 0).at(-1);
  return { runs, position: newest ? { run_id: newest.run_id, seq: newest.last_seq } : null };
}

/** Asks the workspace's live replication process (if one is recorded) for its `/status`. */
async function askLiveProcess(
  ws: Workspace,
  opts: { tokenFile?: string; tlsCa?: Buffer },
  epoch: number,
): Promise<{ live: DrStatus["live"]; liveStatus: LiveStatus }> {
  const endpoint = await readLiveEndpoint(ws);
  if (!endpoint) return { live: null, liveStatus: null };
  const live: NonNullable<DrStatus["live"]> = {
    url: endpoint.url,
    pid: endpoint.pid,
    reachable: false,
    error: null,
  };
  let liveStatus: LiveStatus = null;
  const token = await tokenFor(opts.tokenFile, endpoint.token_file);
  if (!token) {
    live.error = `no token to ask the live process: pass --token-file or set ${TOKEN_ENV}`;
  } else {
    try {
      const peer = new Peer({ baseUrl: endpoint.url, token, ca: opts.tlsCa, epoch: () => epoch });
      liveStatus = (await peer.json<Record<string, unknown>>("GET", "/status", { timeoutMs: 3000 })).value;
      live.reachable = true;
    } catch (err) {
      live.error = (err as Error).message;
    }
  }
  return { live, liveStatus };
}

type LiveLag = { entries: number; seconds: number | null } | undefined;

/**
 * The archiver's lag: a running one's as its newest status says, a stopped one's as measured now
 * against what the store held when it stopped (archiveHealth); undefined when neither is known.
 */
type ArchiveLag = { entries: number; seconds: number; basis: string } | undefined;

function rpoFor(
  role: Role,
  liveStatus: LiveStatus,
  followers: FollowerView[],
  liveLag: LiveLag,
  backup: BackupInfo | null,
  archive: ArchiveLag,
  runs: DrStatus["wal"]["runs"],
): DrStatus["rpo_estimate"] {
  if (role.role === "leader") {
    const est = rpoEstimate(liveStatus ? followers : [], backup, runs);
    // What the WAL archive holds survives the host too: the smaller loss of the two is the
    // estimate (in entries, then in seconds: an archive as complete as the backup is newer).
    if (
      archive &&
      (est.entries === null ||
        archive.entries < est.entries ||
        (archive.entries === est.entries && archive.seconds <= (est.seconds ?? Infinity)))
    )
      return {
        entries: archive.entries,
        seconds: archive.seconds,
        basis: archive.basis,
      };
    return est;
  }
  return liveLag
    ? { entries: liveLag.entries, seconds: liveLag.seconds, basis: "this follower's lag" }
    : { entries: null, seconds: null, basis: "follower process not running: lag unknown" };
}

/** The cluster as a leader sees it: itself, then the followers its live process reports. */
function nodesSeenByLeader(
  ws: Workspace,
  role: Role,
  self: { url: string | null; epoch: number; position: WalPosition; health: string },
  followers: FollowerView[],
): NodeState[] {
  const nodes: NodeState[] = [
    {
      name: role.region ?? "leader",
      role: "leader",
      url: self.url,
      sdd: ws.root,
      epoch: self.epoch,
      wal_position: self.position,
      health: self.health,
      lag_entries: 0,
      lag_seconds: 0,
    },
  ];
  for (const f of followers) {
    nodes.push({
      name: f.name,
      role: "follower",
      url: f.url,
      epoch: f.epoch,
      wal_position: null,
      health: f.health,
      lag_entries: f.lag_entries,
      lag_seconds: f.lag_seconds,
      note: f.integrity_error ? `integrity error: ${f.integrity_error}` : undefined,
    });
  }
  return nodes;
}

/** The cluster as a follower sees it: the leader it follows, then itself. */
function nodesSeenByFollower(
  ws: Workspace,
  role: Role,
  self: { url: string | null; epoch: number; position: WalPosition },
  liveStatus: LiveStatus,
  liveLag: LiveLag,
  thresholds: HealthThresholds,
): NodeState[] {
  const integrity = role.integrity_error ?? null;
  const leaderInfo = liveStatus?.leader as LiveLeader;
  const stop = leaderInfo?.stopped_cleanly ?? null;
  return [
    {
      name: "leader",
      role: "leader",
      url: role.leader_url ?? null,
      epoch: leaderInfo?.epoch ?? null,
      wal_position: stop ? { run_id: stop.run_id, seq: stop.seq } : null,
      health: leaderInfo
        ? stop && leaderInfo.consecutive_failures > 0
          ? "STOPPED"
          : leaderInfo.consecutive_failures >= thresholds.maxRetries
            ? "UNREACHABLE"
            : "HEALTHY"
        : "UNKNOWN",
      lag_entries: null,
      lag_seconds: null,
      note: stop ? `stopped cleanly at ${stop.at}` : undefined,
    },
    {
      name: role.region ?? "follower",
      role: "follower",
      url: self.url,
      sdd: ws.root,
      epoch: self.epoch,
      wal_position: self.position,
      health: integrity
        ? "LAGGING"
        : liveLag
          ? liveLag.entries > thresholds.maxLagEntries
            ? "LAGGING"
            : "HEALTHY"
          : "UNKNOWN",
      lag_entries: liveLag?.entries ?? null,
      lag_seconds: liveLag?.seconds ?? null,
      note: integrity ? `integrity error: ${integrity}` : undefined,
    },
  ];
}

export async function gatherStatus(
  ws: Workspace,
  opts: { tokenFile?: string; tlsCa?: Buffer } = {},
): Promise<DrStatus> {
  const backupLogProblems: BackupLogProblem[] = [];
  const [role, epoch, backup, archive] = await Promise.all([
    readRole(ws),
    readEpoch(ws),
    lastBackupInfo(ws, Date.now(), backupLogProblems),
    archiveHealth(ws.root),
  ]);
  const { runs, position } = await walRuns(ws);
  const { live, liveStatus } = await askLiveProcess(ws, opts, epoch.epoch);

  const thresholds = DEFAULT_THRESHOLDS;
  const followers = (liveStatus?.followers as FollowerView[] | undefined) ?? [];
  const liveLag = liveStatus?.lag as LiveLag;
  const fenced = epoch.superseded_by !== null || liveStatus?.fenced === true;
  const policy = (liveStatus?.policy as string | undefined) ?? role.cluster?.policy ?? null;
  const policyState = (liveStatus?.policy_state as string | undefined) ?? (fenced ? "FENCED" : null);
  const integrity = role.integrity_error ?? null;
  const archiveLag: ArchiveLag =
    archive && lagIsCurrent(archive)
      ? {
          entries: archive.lag_entries,
          seconds: archive.lag_seconds,
          basis: archive.running
            ? `WAL archive ${archive.destination}`
            : `WAL archive ${archive.destination}, archiver not running since ${stoppedSince(archive)}`,
        }
      : undefined;
  const rpo = rpoFor(role, liveStatus, followers, liveLag, backup, archiveLag, runs);

  const self = { url: live?.url ?? null, epoch: epoch.epoch, position };
  const nodes =
    role.role === "leader"
      ? nodesSeenByLeader(
          ws,
          role,
          { ...self, health: fenced ? "FENCED" : (policyState ?? "UNKNOWN") },
          followers,
        )
      : nodesSeenByFollower(ws, role, self, liveStatus, liveLag, thresholds);

  const liveLeader = role.role === "follower" ? (liveStatus?.leader as LiveLeader) : undefined;
  const failover = evaluateFailover({
    perspective: role.role,
    policy: (policy as AckPolicyName | null) ?? null,
    thresholds,
    leaderFailures: liveLeader?.consecutive_failures ?? 0,
    leaderStopped: liveLeader?.stopped_cleanly ?? null,
    leaderNeverReached: liveLeader ? liveLeader.last_contact_at === null : false,
    nodes,
    leaderHalted: policyState === "HALTED",
    leaderFenced: role.role === "leader" && fenced,
    integrityErrors: [integrity, ...followers.map((f) => f.integrity_error)].filter((e): e is string =>
      Boolean(e),
    ),
    lastBackup: backup,
  });

  return {
    sdd: ws.root,
    role: role.role,
    region: role.region ?? null,
    epoch: epoch.epoch,
    fenced,
    fenced_reason: fenced
      ? ((liveStatus?.fenced_reason as string | undefined) ??
        `superseded by epoch ${epoch.superseded_by}${epoch.superseded_reason ? ` (${epoch.superseded_reason})` : ""}`)
      : null,
    leader_url: role.role === "follower" ? (role.leader_url ?? null) : null,
    live,
    policy,
    policy_state: policyState,
    policy_reason: (liveStatus?.policy_reason as string | null | undefined) ?? null,
    wal: { runs, position },
    followers,
    lag: role.role === "follower" ? (liveLag ?? { entries: null, seconds: null }) : null,
    integrity_error: integrity,
    last_backup: backup,
    backup_log_problems: backupLogProblems.map((p) => describeBackupLogProblem(p)),
    leftover_local_copies: await leftoverLocalCopies(localCopyDir()),
    rpo_estimate: rpo,
    failover,
    problem: fenced || policyState === "HALTED",
    thresholds,
    nodes,
    archive,
  };
}
