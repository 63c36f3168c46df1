/**
 * Which replication role this workspace plays, stored durably next to the epoch:
 * `.sdd/runtime/replication/role.json`. A workspace without the file is a stand-alone leader.
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
