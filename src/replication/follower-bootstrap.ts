/**
 * A follower's bootstrap: whether this workspace may become (or stay) a follower of this leader,
 * moving a previous WAL aside (never deleted), and installing the leader's base snapshot, retried
 * while the leader is not up yet or the transfer is cut.
 */
import type { IncomingMessage } from "node:http";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../errors/errors.js";
import { exists } from "../dr/restore-target.js";
import { IntegrityError } from "../wal/continuation.js";
import { durableMkdir, durableRename, fsyncDir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { ReplicationError } from "./ack-policy.js";
import { type Peer, TransportError, errorText, readAll } from "./client.js";
import { replicationDir } from "./epoch.js";
import { utcStamp } from "./failover.js";
import type { RoleState } from "../workspace/replication-role.js";

export type InstallSnapshot = (stream: IncomingMessage, ws: Workspace) => Promise<Record<string, number>>;

/**
 * Refuses to turn a leader's workspace into a follower, or a follower of one region into another,
 * unless a re-bootstrap was asked for. Returns whether a bootstrap is needed.
 */
export function needsBootstrap(
  ws: Workspace,
  role: RoleState,
  hasWal: boolean,
  o: { leaderUrl: string; region: string; rebootstrap?: boolean },
): boolean {
  const isFollower = role.role === "follower";
  if (!isFollower && hasWal && !o.rebootstrap) {
    throw new ReplicationError(
      `${ws.shownRoot} holds a leader's WAL; pass --rebootstrap to replace it with ${o.leaderUrl}'s state (the old WAL is kept in runtime/replication/quarantine-*)`,
    );
  }
  if (isFollower && role.region && role.region !== o.region && !o.rebootstrap) {
    throw new ReplicationError(`${ws.shownRoot} follows as region "${role.region}", not "${o.region}"`);
  }
  return !isFollower || o.rebootstrap === true || role.bootstrapping === true;
}

const QUARANTINE_PREFIX = "quarantine-";

/** Moves the workspace's WAL folder to `runtime/replication/quarantine-<utc>/wal`. */
export async function quarantineWal(ws: Workspace, log: (line: string) => void): Promise<void> {
  const q = path.join(replicationDir(ws), `${QUARANTINE_PREFIX}${utcStamp()}`);
  await durableMkdir(q);
  await durableRename(ws.walDir, path.join(q, "wal"));
  await durableMkdir(ws.walDir);
  await fsyncDir(path.dirname(ws.walDir));
  log(`replicate follow: moved the previous WAL to ${path.relative(ws.root, q)}/wal`);
}

/**
 * A restore that replaced the workspace (a bootstrap's, a promotion's) kept the previous tree at
 * `keptRoot`: its quarantined WALs (a fenced leader's unreplicated decisions) move into the
 * restored workspace, where `runtime/replication/quarantine-*` promises them. Until the caller
 * removes `keptRoot` they are in one of the two trees, never in neither.
 */
export async function carryQuarantines(keptRoot: string, ws: Workspace): Promise<void> {
  const from = path.join(keptRoot, path.relative(ws.root, replicationDir(ws)));
  const names = await readdir(from).catch(() => [] as string[]);
  const quarantines = names.filter((n) => n.startsWith(QUARANTINE_PREFIX));
  if (quarantines.length === 0) return;
  await durableMkdir(replicationDir(ws));
  for (const name of quarantines) {
    let to = path.join(replicationDir(ws), name);
    // The snapshot carried the leader's own quarantine of that name: ours gets another one.
    for (let i = 1; await exists(to); i++) to = path.join(replicationDir(ws), `${name}-${i}`);
    await durableRename(path.join(from, name), to);
  }
}

export interface SnapshotFetchContext {
  ws: Workspace;
  leaderUrl: string;
  peer: Peer;
  install: InstallSnapshot;
  retryMs: number;
  log: (line: string) => void;
  isStopped: () => boolean;
  sleep: (ms: number) => Promise<void>;
  /** Receives how to cut the snapshot transfer in flight (a stop during the bootstrap). */
  setAbort: (abort: (() => void) | null) => void;
  /** The restore swaps the whole folder (the lock file goes with the old one): let go of it... */
  releaseLock: () => Promise<void>;
  /** ...and take it again in the new folder. */
  retakeLock: () => Promise<void>;
}

export interface SnapshotFetch {
  /** The WAL positions of the installed snapshot (null: none installed). */
  positions: Record<string, number> | null;
  /** The snapshot's WAL was cut before a bad entry. */
  integrityError: string | null;
  /** The epoch the leader announced (null: it announced none). */
  leaderEpoch: number | null;
}

/**
 * Fetches and installs the leader's base snapshot. A leader that is not up yet, or a connection
 * lost before or during the snapshot, is tried again every `retryMs` (each failure logged) instead
 * of ending the follower. A leader without a snapshot leaves the WAL to replicate alone.
 */
export async function fetchBaseSnapshot(c: SnapshotFetchContext): Promise<SnapshotFetch> {
  const out: SnapshotFetch = { positions: null, integrityError: null, leaderEpoch: null };
  for (let attempt = 1; ; attempt++) {
    const retry = async (what: string, err: Error): Promise<void> => {
      c.log(`replicate follow: ${what} (${attempt}): ${err.message}; retrying`);
      await c.sleep(c.retryMs);
    };
    if (c.isStopped()) throw new ReplicationError("bootstrap stopped before it finished");
    let opened: Awaited<ReturnType<Peer["open"]>>;
    try {
      opened = await c.peer.open("GET", "/snapshot", { timeoutMs: 600_000, onAbortable: c.setAbort });
    } catch (err) {
      if (!(err instanceof TransportError) || c.isStopped()) throw err;
      await retry("leader contact failed", err);
      continue;
    }
    const { res, epoch } = opened;
    if (epoch !== undefined) out.leaderEpoch = epoch;
    if (res.statusCode !== 200) {
      const body = await readAll(res);
      if (res.statusCode === 401) throw new ReplicationError(`leader ${c.leaderUrl} refused the token`);
      c.log(
        `replicate follow: no base snapshot (${res.statusCode}: ${errorText(body)}); replicating the WAL only`,
      );
      return out;
    }
    const installed = await installOnce(c, res).finally(() => c.setAbort(null));
    if (installed.dropped) {
      await retry("base snapshot lost mid-way", installed.dropped);
      continue;
    }
    out.positions = installed.positions;
    if (installed.broken) out.integrityError = `base snapshot: ${installed.broken.message}`;
    return out;
  }
}

/** One install of a snapshot stream, with the workspace lock let go of and taken again. */
async function installOnce(
  c: SnapshotFetchContext,
  res: IncomingMessage,
): Promise<{ positions: Record<string, number> | null; broken?: IntegrityError; dropped?: Error }> {
  await c.releaseLock();
  let result: { positions: Record<string, number> | null; broken?: IntegrityError; dropped?: Error };
  try {
    result = { positions: await c.install(res, c.ws) };
  } catch (err) {
    if (err instanceof IntegrityError)
      result = { positions: null, broken: err }; // the WAL was cut before the bad entry
    // Not a bad archive (a UserError): a lost connection, and the atomic restore left the
    // workspace as it was.
    else if (!(err instanceof UserError) && !c.isStopped())
      result = { positions: null, dropped: err as Error };
    else throw err;
  }
  await c.retakeLock();
  return result;
}
