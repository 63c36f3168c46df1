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

export type WalPositions = Record<string, WalPosition | null>;

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

  async atDecisionBoundary(positions: () => WalPositions | Promise<WalPositions>): Promise<BoundaryResult> {
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
      if (!isProcessAlive(req.pid)) {
        await unlink(file).catch(() => {}); // the requester died: nobody will release it
        continue;
      }
      return this.hold(file, req, await positions());
    }
    return { paused: false, heldMs: 0 };
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
