/**
 * The replication epoch: a number stored durably in the workspace that every replication request
 * carries. Promotion raises it; a node never accepts entries from, or acknowledges for, an older
 * epoch; a leader that learns of a newer epoch is fenced: it records that fact durably and refuses
 * to make decisions from then on (also after a restart).
 *
 * File: `.sdd/runtime/replication/epoch.json`, replaced atomically:
 *   { "epoch": N, "superseded_by": M | null, "superseded_reason": "...", "updated_at": "ISO" }
 */
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";

import { type EpochState, epochFile, readEpoch } from "../workspace/replication-role.js";

// Reading the file sits with the role (src/workspace/): `start` and `doctor` ask whether the node is fenced.
export { type EpochState, epochFile, readEpoch };

export const EPOCH_HEADER = "x-bernstein-epoch";

export function replicationDir(ws: Workspace): string {
  return ws.replicationDir;
}

export async function writeEpoch(ws: Workspace, state: EpochState): Promise<void> {
  await durableMkdir(replicationDir(ws));
  await atomicWriteFile(epochFile(ws), JSON.stringify(state, null, 2) + "\n");
}

/** Raises the epoch by one (promotion). Clears any fencing: the node now leads the new epoch. */
export async function raiseEpoch(ws: Workspace, atLeast = 0): Promise<EpochState> {
  const cur = await readEpoch(ws);
  const next: EpochState = {
    epoch: Math.max(cur.epoch, cur.superseded_by ?? 0, atLeast) + 1,
    superseded_by: null,
    superseded_reason: null,
    updated_at: new Date().toISOString(),
  };
  await writeEpoch(ws, next);
  return next;
}

/**
 * A follower adopts a newer epoch (it follows the new leader from now on). Returns the state
 * after the change; never lowers the epoch.
 */
export async function adoptEpoch(ws: Workspace, epoch: number): Promise<EpochState> {
  const cur = await readEpoch(ws);
  if (epoch <= cur.epoch) return cur;
  const next: EpochState = {
    epoch,
    superseded_by: null,
    superseded_reason: null,
    updated_at: new Date().toISOString(),
  };
  await writeEpoch(ws, next);
  return next;
}

/** A leader learns of a newer epoch: record it durably so that it stays fenced across restarts. */
export async function recordSuperseded(ws: Workspace, newer: number, reason: string): Promise<EpochState> {
  const cur = await readEpoch(ws);
  if (newer <= cur.epoch || (cur.superseded_by ?? 0) >= newer) return cur;
  const next: EpochState = {
    ...cur,
    superseded_by: newer,
    superseded_reason: reason,
    updated_at: new Date().toISOString(),
  };
  await writeEpoch(ws, next);
  return next;
}

export function fencedMessage(state: EpochState): string {
  return `fenced: this node's epoch ${state.epoch} was superseded by epoch ${state.superseded_by}${
    state.superseded_reason ? ` (${state.superseded_reason})` : ""
  }; it must not make decisions. Follow the new leader or restore from it`;
}

/** Parses an epoch header value; undefined when absent or malformed. */
export function parseEpochHeader(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

/**
 * How far beyond the epoch a node knows an epoch announced to it may lie. Each promotion raises
 * the epoch by exactly one (max of the epochs it saw + 1), so a node learns of an epoch N ahead
 * of its own only after missing N promotions, each one an operator's `dr promote`. Anything
 * further is a bug or a forged value, and accepting it would fence a leader for good (or move a
 * follower past every real leader) with no way back: the next promotion's `max + 1` would leave
 * the safe integers.
 */
export const MAX_EPOCH_JUMP = 1000;

/**
 * Why an epoch announced by a peer (the `x-bernstein-epoch` header, the body of `POST /fence`)
 * cannot be accepted by a node at epoch `known`, or undefined when it can: it must be a safe
 * integer ≥ 1 and at most `known + MAX_EPOCH_JUMP`.
 */
export function announcedEpochProblem(value: unknown, known: number): string | undefined {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) return "not an integer ≥ 1";
  if (value > known + MAX_EPOCH_JUMP)
    return `more than ${MAX_EPOCH_JUMP} beyond this node's epoch ${known} (a promotion raises it by one)`;
  return undefined;
}

/**
 * The epoch a request announces in its header: undefined when it carries none; throws
 * `onProblem(message)` when the header is there but cannot be accepted.
 */
export function requestEpoch(
  header: string | string[] | undefined,
  known: number,
  onProblem: (message: string) => Error,
): number | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(",") : header;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  const problem = announcedEpochProblem(n, known);
  if (problem) throw onProblem(`${EPOCH_HEADER} ${JSON.stringify(text.slice(0, 40))}: ${problem}`);
  return n;
}
