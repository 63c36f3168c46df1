/**
 * The audit log writer: daily UTC files under `.sdd/audit/`, one HMAC chain across all of them,
 * every append fsynced before it returns. One writer per workspace (the workspace lock).
 */
import path from "node:path";
import { parseJson } from "../json/canonical.js";
import { asJsonObject } from "../json/object.js";
import { durableAppend, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { endsWithNewline, readLinesBackward } from "../workspace/lines.js";
import {
  auditFileName,
  auditLine,
  auditTimestamp,
  computeAuditHmac,
  GENESIS_HMAC,
  type AuditEntry,
  type AuditEvent,
} from "./entry.js";
import { listAuditFiles } from "./files.js";
import type { AuditKey } from "./key.js";

export interface AuditTail {
  hmac: string;
  file?: string;
}

/** The hmac of the last readable entry, scanning back from the end (cost: the tail, not the log). */
export async function findAuditTail(dir: string): Promise<AuditTail> {
  const files = await listAuditFiles(dir);
  for (let i = files.length - 1; i >= 0; i--) {
    const file = path.join(dir, files[i]);
    for await (const line of readLinesBackward(file)) {
      const hmac = hmacOfLine(line.text);
      if (hmac) return { hmac, file };
    }
  }
  return { hmac: GENESIS_HMAC };
}

function hmacOfLine(text: string): string | undefined {
  if (!text.trim()) return undefined;
  try {
    const v = asJsonObject(parseJson(text));
    if (v && typeof v.hmac === "string") return v.hmac;
  } catch {
    // a torn or damaged line: keep looking further back
  }
  return undefined;
}

export class AuditLog {
  private queue: Promise<unknown> = Promise.resolve();
  /** Files whose last byte we have checked (a torn tail gets a newline before our first append). */
  private readonly checked = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly key: Buffer,
    private lastHmac: string,
  ) {}

  /** Opens the workspace's audit log, continuing the chain from its last readable entry. */
  static async open(ws: Workspace | string, key: Buffer | AuditKey): Promise<AuditLog> {
    const dir = typeof ws === "string" ? ws : ws.auditDir;
    const keyBytes = Buffer.isBuffer(key) ? key : key.key;
    const tail = await findAuditTail(dir);
    return new AuditLog(dir, keyBytes, tail.hmac);
  }

  get lastHmacValue(): string {
    return this.lastHmac;
  }

  /** Appends one event; resolves with the entry once it is on disk. Appends are serialized. */
  append(event: AuditEvent): Promise<AuditEntry> {
    const run = this.queue.then(() => this.appendNow(event));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async appendNow(event: AuditEvent): Promise<AuditEntry> {
    const timestamp = auditTimestamp();
    const unsigned = {
      timestamp,
      event_type: event.event_type,
      actor: event.actor,
      resource_type: event.resource_type,
      resource_id: event.resource_id,
      details: event.details ?? {},
      prev_hmac: this.lastHmac,
    };
    const entry: AuditEntry = { ...unsigned, hmac: computeAuditHmac(this.key, unsigned) };
    const file = path.join(this.dir, auditFileName(timestamp));
    let prefix = "";
    if (!this.checked.has(file)) {
      await durableMkdir(this.dir);
      // Keep a torn fragment on its own line (verify reports it); never glue our entry onto it.
      if (!(await endsWithNewline(file))) prefix = "\n";
      this.checked.add(file);
    }
    try {
      await durableAppend(file, prefix + auditLine(entry) + "\n");
    } catch (err) {
      throw new Error(`audit: appending to ${file}: ${(err as Error).message}`, { cause: err });
    }
    this.lastHmac = entry.hmac;
    return entry;
  }
}
