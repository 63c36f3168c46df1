/**
 * Which replication role this workspace plays, stored durably next to the epoch:
 * `.sdd/runtime/replication/role.json`. A workspace without the file is a stand-alone leader.
 * The epoch file (`epoch.json`, written by src/replication/epoch.ts) is read here too: whether this
 * node may lead (`assertMayLead`, checked by every `start` and by a replication leader) depends on
 * both, and `doctor` reports the same.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { atomicWriteFile, durableMkdir } from "./durable.js";
import type { Workspace } from "./layout.js";

export type Role = "leader" | "follower";

export interface RoleState {
  role: Role;
  /** Follower: the leader it pulls from. */
  leader_url?: string;
  /** Follower: its region name, as the leader knows it. */
  region?: string;
  /** Follower: an integrity error that stopped it; cleared only by a re-bootstrap. */
  integrity_error?: string | null;
  /** Follower: the base snapshot it holds (relative to `.sdd/`), and the WAL positions in it. */
  base_snapshot?: { file: string; fetched_at: string; wal_positions: Record<string, number> } | null;
  /** Follower: its bootstrap has not finished (interrupted): the next `replicate follow` bootstraps again. */
  bootstrapping?: boolean;
  /** Follower: what it last learned of the leader's configuration (for promotion). */
  cluster?: { policy: string; followers: Array<{ name: string; url: string | null }> } | null;
  /** Leader after promotion: when and from which role. */
  promoted_at?: string;
  updated_at: string;
}

export function roleFile(ws: Workspace): string {
  return path.join(ws.replicationDir, "role.json");
}

export async function readRole(ws: Workspace): Promise<RoleState> {
  let text: string;
  try {
    text = await readFile(roleFile(ws), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      return { role: "leader", updated_at: new Date(0).toISOString() };
    }
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as RoleState;
    if (parsed.role !== "leader" && parsed.role !== "follower") throw new Error("bad role");
    return parsed;
  } catch {
    throw new UserError(`role file ${roleFile(ws)} is corrupt`, ExitCode.CORRUPT);
  }
}

export async function writeRole(ws: Workspace, state: Omit<RoleState, "updated_at">): Promise<RoleState> {
  const full: RoleState = { ...state, updated_at: new Date().toISOString() };
  await durableMkdir(ws.replicationDir);
  await atomicWriteFile(roleFile(ws), JSON.stringify(full, null, 2) + "\n");
  return full;
}

export interface EpochState {
  /** This node's epoch: the term it leads or follows in. Starts at 1. */
  epoch: number;
  /** Set when this node learned that another node holds a newer epoch: it must not decide. */
  superseded_by: number | null;
  superseded_reason: string | null;
  updated_at: string;
}

export function epochFile(ws: Workspace): string {
  return path.join(ws.replicationDir, "epoch.json");
}

export async function readEpoch(ws: Workspace): Promise<EpochState> {
  let text: string;
  try {
    text = await readFile(epochFile(ws), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      return {
        epoch: 1,
        superseded_by: null,
        superseded_reason: null,
        updated_at: new Date(0).toISOString(),
      };
    }
    throw err;
  }
  let parsed: Partial<EpochState>;
  try {
    parsed = JSON.parse(text) as Partial<EpochState>;
  } catch {
    throw new UserError(`epoch file ${epochFile(ws)} is not valid JSON`, ExitCode.CORRUPT);
  }
  if (typeof parsed.epoch !== "number" || !Number.isSafeInteger(parsed.epoch) || parsed.epoch < 1) {
    throw new UserError(`epoch file ${epochFile(ws)} has no valid epoch`, ExitCode.CORRUPT);
  }
  return {
    epoch: parsed.epoch,
    superseded_by: typeof parsed.superseded_by === "number" ? parsed.superseded_by : null,
    superseded_reason: typeof parsed.superseded_reason === "string" ? parsed.superseded_reason : null,
    updated_at: typeof parsed.updated_at === "string" ? parsed.updated_at : new Date(0).toISOString(),
  };
}

/** What this node is, from its role and epoch files: only a leader may make decisions. */
export type Standing =
  | { kind: "leader"; epoch: number }
  | { kind: "follower"; epoch: number; leader_url: string | null }
  | { kind: "fenced"; epoch: number; superseded_by: number; reason: string | null };

export async function readStanding(ws: Workspace): Promise<Standing> {
  const [role, epoch] = await Promise.all([readRole(ws), readEpoch(ws)]);
  if (role.role === "follower")
    return { kind: "follower", epoch: epoch.epoch, leader_url: role.leader_url ?? null };
  if (epoch.superseded_by !== null)
    return {
      kind: "fenced",
      epoch: epoch.epoch,
      superseded_by: epoch.superseded_by,
      reason: epoch.superseded_reason,
    };
  return { kind: "leader", epoch: epoch.epoch };
}

/** The one line refusing a follower the leader's part (`start`, `replicate serve`). */
export function followerRefusal(leaderUrl: string | null | undefined): string {
  return `this node follows ${leaderUrl ?? "another leader"}; run \`bernstein dr promote\` before leading`;
}

/** The one line refusing a fenced node: a newer epoch leads, and how this node re-joins. */
export function fencedRefusal(s: { epoch: number; superseded_by: number }): string {
  return `this node was superseded by epoch ${s.superseded_by} (its epoch ${s.epoch} is fenced) and must not lead; re-join as a follower: \`bernstein replicate follow --leader NEW_LEADER_URL --rebootstrap\``;
}

/**
 * Refuses (exit 8) to let a follower or a fenced node make decisions: every `start` calls it
 * before it takes the lock (a follower's `replicate follow` may hold it), so the refusal names the
 * role, not the lock.
 */
export async function assertMayLead(ws: Workspace): Promise<void> {
  const s = await readStanding(ws);
  if (s.kind === "follower") throw new UserError(followerRefusal(s.leader_url), ExitCode.REPLICATION);
  if (s.kind === "fenced") throw new UserError(fencedRefusal(s), ExitCode.REPLICATION);
}
