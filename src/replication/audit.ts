/**
 * Replication's audit events (degraded to LEADER_ONLY, restored, fenced, promoted), appended to
 * the workspace's HMAC audit chain. The log is opened on first use (creating the key if needed,
 * as any command that writes events does).
 */
import { AuditLog } from "../audit/log.js";
import { loadAuditKey } from "../audit/key.js";
import type { JsonValue } from "../json/canonical.js";
import type { Workspace } from "../workspace/layout.js";

export type Auditor = (eventType: string, details: Record<string, unknown>) => Promise<void>;

export function replicationAuditor(ws: Workspace, opts: { keyFile?: string } = {}): Auditor {
  let log: Promise<AuditLog> | null = null;
  return async (eventType, details) => {
    log ??= loadAuditKey({ create: true, keyFile: opts.keyFile }).then((key) => AuditLog.open(ws, key));
    const l = await log;
    await l.append({
      event_type: eventType,
      actor: "replication",
      resource_type: "replication",
      resource_id: ws.root,
      details: JSON.parse(JSON.stringify(details)) as JsonValue,
    });
  };
}
