/**
 * Audit events for DR actions (`dr.backup`, `dr.drill`, `dr.restore`). The audit chain has one
 * writer per workspace, so the event is appended under the workspace lock; while a live process
 * holds the lock the event is not appended (it would fork the chain) and the caller gets a
 * warning instead. The backup itself is still recorded in runs/backups.jsonl. Without the
 * workspace's audit key the event is skipped with a warning too (loadAuditKeyForWriting: no new
 * key is minted for a log that has entries).
 */
import { loadAuditKeyForWriting } from "../audit/key.js";
import { AuditLog } from "../audit/log.js";
import type { JsonValue } from "../json/canonical.js";
import type { Workspace } from "../workspace/layout.js";
import { acquireLock } from "../workspace/lock.js";
import { UserError } from "../errors/errors.js";

export interface DrAuditEvent {
  event_type: string;
  resource_type: string;
  resource_id: string;
  details: { [key: string]: JsonValue };
}

export async function recordAuditEvent(
  ws: Workspace,
  event: DrAuditEvent,
  opts: { keyFile?: string } = {},
): Promise<{ recorded: boolean; hmac?: string; warning?: string }> {
  let lock;
  try {
    lock = await acquireLock(ws, `bernstein ${event.event_type}`);
  } catch (err) {
    if (err instanceof UserError) {
      return { recorded: false, warning: `audit event ${event.event_type} not recorded: ${err.message}` };
    }
    throw err;
  }
  try {
    const key = await loadAuditKeyForWriting(ws.auditDir, { keyFile: opts.keyFile });
    const log = await AuditLog.open(ws, key);
    const entry = await log.append({ ...event, actor: "dr" });
    return { recorded: true, hmac: entry.hmac };
  } catch (err) {
    return {
      recorded: false,
      warning: `audit event ${event.event_type} not recorded: ${(err as Error).message}`,
    };
  } finally {
    await lock.release();
  }
}
