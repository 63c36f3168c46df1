/**
 * Consistent snapshot of a live workspace: both sides of a small file protocol in
 * `runtime/snapshot/` (excluded from backups).
 *
 *  1. The backup, seeing a live process hold the workspace lock, writes `request-<id>.json`
 *     ({id, pid, requested_at, hold_ms}).
 *  2. The orchestrator calls `responder.atDecisionBoundary(positions)` between decisions (never in
 *     the middle of one). Seeing a request, it writes `ack-<id>.json` with its WAL positions
 *     ({run_id: {seq, entry_hash}}) and holds: it makes no decision until the request file is
 *     removed (release), the requester dies, or `hold_ms` passes (then it removes the ack, so the
 *     backup can tell that the pause expired).
 *  3. The backup waits a bounded time for the ack, copies, checks the ack is still there, and
 *     releases by removing the request.
 *
 * Independently of the pause, every WAL is copied only up to its last complete, hash-valid entry
 * (at most the acknowledged position), so a backup never holds a torn entry.
 *
 * A decision held at the replication commit gate (`start --replication-listen` waiting for its
 * followers' acknowledgements) also answers, but only this process's own requests: see
 * `SnapshotResponder.whileWaiting`.
 */
import { randomBytes } from "node:crypto";
import { readFile, readdir, unlink } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import { readLock } from "../workspace/lock.js";
import { isProcessAlive } from "../workspace/process.js";
import type { Workspace } from "../workspace/layout.js";
import type { SnapshotInfo, WalPosition } from "./manifest.js";

export const DEFAULT_ACK_TIMEOUT_MS = 5_000;
export const DEFAULT_HOLD_MS = 120_000;
/** How often a decision held at the commit gate looks for a pause request. */
const GATE_POLL_MS = 10;

export type WalPositions = Record<string, WalPosition | null>;

/** The positions a pause reports for the run a WAL writer appends to (its newest durable entry). */
export function writerPositions(
  pos: { runId: string; seq: number; entry_hash: string } | undefined,
): WalPositions {
  return pos ? { [pos.runId]: { seq: pos.seq, entry_hash: pos.entry_hash } } : {};
}

interface SnapshotRequest {
  id: string;
  pid: number;
  requested_at: string;
  hold_ms: number;
}
interface SnapshotAck {
  id: string;
  pid: number;
  acked_at: string;
  positions: WalPositions;
}

export interface SnapshotHandle {
  method: SnapshotInfo["method"];
  /** WAL positions the paused orchestrator reported (cut no WAL past them). */
  positions?: WalPositions;
  warning?: string;
  /** Ends the pause; returns the snapshot description for the manifest. */
  release(): Promise<SnapshotInfo>;
}

const snapDir = (ws: Workspace): string => ws.snapshotDir;

/**
 * Backup side. When no live process holds the lock there is nothing to pause (`idle`). Otherwise
 * asks for a pause and waits up to `ackTimeoutMs`; without an ack the backup goes on `unpaused`
 * (WAL cuts still keep every WAL whole-entry) and says so.
 */
export async function requestSnapshot(
  ws: Workspace,
  opts: { ackTimeoutMs?: number; holdMs?: number } = {},
): Promise<SnapshotHandle> {
  const lock = await readLock(ws);
  const base = { wal_cut: "last-valid-entry" as const };
  if (lock.state !== "held") {
    return { method: "idle", release: async () => ({ method: "idle", ...base }) };
  }
  const id = `${Date.now().toString(36)}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const dir = snapDir(ws);
  const requestFile = path.join(dir, `request-${id}.json`);
  const ackFile = path.join(dir, `ack-${id}.json`);
  const holdMs = opts.holdMs ?? DEFAULT_HOLD_MS;
  const request: SnapshotRequest = {
    id,
    pid: process.pid,
    requested_at: new Date().toISOString(),
    hold_ms: holdMs,
  };
  await durableMkdir(dir);
  await atomicWriteFile(requestFile, JSON.stringify(request) + "\n");
  const started = Date.now();
  const deadline = started + (opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
  let ack: SnapshotAck | undefined;
  while (Date.now() < deadline) {
    ack = await readFile(ackFile, "utf8").then(
      (t) => JSON.parse(t) as SnapshotAck,
      () => undefined,
    );
    if (ack) break;
    await sleep(5);
  }
  const removeRequest = async (): Promise<void> => {
    await unlink(requestFile).catch(() => {});
  };
  if (!ack) {
    await removeRequest();
    const warning = `live process pid ${lock.info.pid} did not acknowledge the snapshot pause within ${
      (opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS) / 1000
    }s; copied without a pause (each WAL cut at its last valid entry)`;
    return { method: "unpaused", warning, release: async () => ({ method: "unpaused", ...base, warning }) };
  }
  const pausedAt = Date.now();
  return {
    method: "paused",
    positions: ack.positions,
    release: async () => {
      // The responder removes its ack when its hold expires: then the copy was not fully paused.
      const stillHeld = await readFile(ackFile).then(
        () => true,
        () => false,
      );
      await removeRequest();
      const paused_ms = Date.now() - pausedAt;
      if (!stillHeld) {
        const warning = `the orchestrator's pause expired after ${holdMs} ms, before the copy finished`;
        return { method: "unpaused", ...base, paused_ms, warning };
      }
      return { method: "paused", ...base, paused_ms };
    },
  };
}

export interface BoundaryResult {
  paused: boolean;
  heldMs: number;
  requestId?: string;
  expired?: boolean;
}

/**
 * Orchestrator side: call `atDecisionBoundary` between decisions. Cheap when no request is
 * pending (one readdir, at most every `checkIntervalMs`).
 */
export class SnapshotResponder {
  private lastCheck = 0;
  constructor(
    private readonly ws: Workspace,
    private readonly opts: { checkIntervalMs?: number; pollMs?: number; maxHoldMs?: number } = {},
  ) {}

  /** `onlyPid`: answer only the requests of that process (the others wait for another boundary). */
  async atDecisionBoundary(
    positions: () => WalPositions | Promise<WalPositions>,
    onlyPid?: number,
  ): Promise<BoundaryResult> {
    const now = Date.now();
    if (now - this.lastCheck < (this.opts.checkIntervalMs ?? 0)) return { paused: false, heldMs: 0 };
    this.lastCheck = now;
    const dir = snapDir(this.ws);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return { paused: false, heldMs: 0 };
    }
    const requests = names.filter((n) => n.startsWith("request-") && n.endsWith(".json")).sort();
    for (const name of requests) {
      const file = path.join(dir, name);
      const req = await readFile(file, "utf8").then(
        (t) => JSON.parse(t) as SnapshotRequest,
        () => undefined,
      );
      if (!req || typeof req.pid !== "number") continue;
      if (onlyPid !== undefined && req.pid !== onlyPid) continue;
      if (!isProcessAlive(req.pid)) {
        await unlink(file).catch(() => {}); // the requester died: nobody will release it
        continue;
      }
      return this.hold(file, req, await positions());
    }
    return { paused: false, heldMs: 0 };
  }

  /**
   * Settles as `waiting` does (a decision held at the replication commit gate), answering this
   * process's pause requests meanwhile, and never while a pause holds. Why: the leader inside
   * `start` serves its base snapshot through this protocol, and the follower asking for it cannot
   * acknowledge anything before it has it; answered only between decisions, its request sat behind
   * a decision waiting for that very follower until the ack timeout halted the leader. Held at the
   * gate, the orchestrator is between an entry's local fsync and what the entry allows: nothing is
   * half done and no other decision is in flight (decisions are made one at a time), so the pause
   * is as consistent as one between decisions. Completion records are not collected into the WAL
   * first (that would be a decision inside this one): a follower gets them with the WAL after its
   * snapshot, while another process's backup, which has no such WAL, still waits for a boundary.
   */
  async whileWaiting<T>(waiting: Promise<T>, positions: () => WalPositions): Promise<T> {
    let settled = false;
    const done = waiting.then(
      () => void (settled = true),
      () => void (settled = true),
    );
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, GATE_POLL_MS)))]);
      clearTimeout(timer);
      if (settled) return waiting;
      await this.atDecisionBoundary(positions, process.pid);
    }
  }

  private async hold(
    requestFile: string,
    req: SnapshotRequest,
    positions: WalPositions,
  ): Promise<BoundaryResult> {
    const ackFile = path.join(path.dirname(requestFile), `ack-${req.id}.json`);
    const ack: SnapshotAck = { id: req.id, pid: process.pid, acked_at: new Date().toISOString(), positions };
    await atomicWriteFile(ackFile, JSON.stringify(ack) + "\n");
    const started = Date.now();
    const limit = Math.min(req.hold_ms || DEFAULT_HOLD_MS, this.opts.maxHoldMs ?? DEFAULT_HOLD_MS);
    let expired = false;
    for (;;) {
      const present = await readFile(requestFile).then(
        () => true,
        () => false,
      );
      if (!present) break;
      if (!isProcessAlive(req.pid)) break;
      if (Date.now() - started >= limit) {
        expired = true;
        break;
      }
      await sleep(this.opts.pollMs ?? 5);
    }
    await unlink(ackFile).catch(() => {});
    if (expired || !isProcessAlive(req.pid)) await unlink(requestFile).catch(() => {});
    return { paused: true, heldMs: Date.now() - started, requestId: req.id, expired };
  }
}
