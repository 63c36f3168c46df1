/**
 * Replication's audit events (degraded to LEADER_ONLY, restored, fenced, promoted), appended to
 * the workspace's HMAC audit chain. The log is opened on first use with the writer's key rule
 * (loadAuditKeyForWriting: a key is created only for a log without entries). Without the
 * workspace's key the events are skipped: replication goes on, and `warn` says once why and how
 * to point at the key.
 */
import { AuditLog } from "../audit/log.js";
import { AuditKeyMissingError, loadAuditKeyForWriting } from "../audit/key.js";
import type { JsonValue } from "../json/canonical.js";
import type { Workspace } from "../workspace/layout.js";

export type Auditor = (eventType: string, details: Record<string, unknown>) => Promise<void>;

export function replicationAuditor(
  ws: Workspace,
  opts: { keyFile?: string; warn?: (line: string) => void } = {},
): Auditor {
  let log: Promise<AuditLog | null> | null = null;
  const warn = opts.warn ?? ((line: string) => process.stderr.write(`warning: ${line}\n`));
  return async (eventType, details) => {
    log ??= loadAuditKeyForWriting(ws.auditDir, { keyFile: opts.keyFile })
      .then((key) => AuditLog.open(ws, key))
      .catch((err: unknown) => {
        // A missing key, or one that did not sign this log (AuditKeyMismatchError).
        if (!(err instanceof AuditKeyMissingError)) throw err;
        warn(`replication audit events are skipped: ${err.message}`);
        return null;
      });
    const l = await log;
    if (!l) return;
    await l.append({
      event_type: eventType,
      actor: "replication",
      resource_type: "replication",
      resource_id: ws.root,
      details: JSON.parse(JSON.stringify(details)) as JsonValue,
    });
  };
}
