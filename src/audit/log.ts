/**
 * The audit log writer: daily UTC files under `.sdd/audit/`, one HMAC chain across all of them,
 * every append fsynced before it returns. One writing process per workspace (the workspace lock);
 * in that process, every AuditLog of the folder appends to one chain state.
 */
import path from "node:path";
import { parseJson } from "../json/canonical.js";
import { asJsonObject } from "../json/object.js";
import { durableAppendLines, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesBackward } from "../workspace/lines.js";
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
import { AuditKeyMismatchError, type AuditKey } from "./key.js";
import { ExitCode } from "../errors/errors.js";
import { shown } from "../workspace/shown-path.js";

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

/** How many of the newest entries a key may fail before the log counts as another key's. */
const KEY_CHECK_ENTRIES = 8;

/**
 * Whether `key` signed one of the newest entries of the log in `dir`: "signed", "not-signed", or
 * "no-entries" when no line of it is an entry. A few entries, not one: an altered last entry
 * must not make the right key look wrong.
 */
export async function auditLogSignedBy(
  dir: string,
  key: Buffer,
): Promise<"signed" | "not-signed" | "no-entries"> {
  const files = await listAuditFiles(dir);
  let seen = 0;
  for (let i = files.length - 1; i >= 0; i--) {
    for await (const line of readLinesBackward(path.join(dir, files[i]))) {
      const entry = entryOfLine(line.text);
      if (!entry) continue;
      if (computeAuditHmac(key, entry) === entry.hmac) return "signed";
      if (++seen >= KEY_CHECK_ENTRIES) return "not-signed";
    }
  }
  return seen === 0 ? "no-entries" : "not-signed";
}

/** Whether `key` may sign the log in `dir`: it signed one of its newest entries, or it has none. */
export async function keySignsAuditLog(dir: string, key: Buffer): Promise<boolean> {
  return (await auditLogSignedBy(dir, key)) !== "not-signed";
}

function hmacOfLine(text: string): string | undefined {
  return entryOfLine(text)?.hmac;
}

function entryOfLine(text: string): (Record<string, unknown> & { hmac: string }) | undefined {
  if (!text.trim()) return undefined;
  try {
    const v = asJsonObject(parseJson(text));
    if (v && typeof v.hmac === "string") return v as Record<string, unknown> & { hmac: string };
  } catch {
    // a torn or damaged line: keep looking further back
  }
  return undefined;
}

/** Where a folder's chain stands in this process: what every AuditLog of the folder appends after. */
interface ChainState {
  /** Appends (and re-reads of the tail), one at a time. */
  queue: Promise<unknown>;
  lastHmac: string;
  /** Files appended to since the log was opened: their folder exists, no need to make it again. */
  checked: Set<string>;
}

/**
 * One chain state per audit folder in this process. Two writers in one process (`start`'s task
 * events and its replication leader's degraded/fenced events) each opening the log would each
 * keep their own last hmac, and the second to append would fork the chain.
 */
const chains = new Map<string, ChainState>();

export class AuditLog {
  private constructor(
    readonly dir: string,
    private readonly key: Buffer,
    private readonly chain: ChainState,
  ) {}

  /**
   * Opens the workspace's audit log, continuing the chain from its last readable entry.
   * AuditKeyMismatchError when none of the log's newest entries verifies with `key`.
   */
  static async open(ws: Workspace | string, key: Buffer | AuditKey): Promise<AuditLog> {
    const dir = path.resolve(typeof ws === "string" ? ws : ws.auditDir);
    const keyBytes = Buffer.isBuffer(key) ? key : key.key;
    if (!(await keySignsAuditLog(dir, keyBytes))) {
      const named = Buffer.isBuffer(key) ? "the audit key given" : `the audit key ${shown(key.path)}`;
      throw new AuditKeyMismatchError(
        `none of the newest entries of ${shown(dir)} verifies with ${named}: it was signed with another key, ` +
          `so nothing is appended (point at the workspace's key with BERNSTEIN_AUDIT_KEY_PATH=FILE)`,
        ExitCode.USAGE,
        Buffer.isBuffer(key) ? {} : { key_path: key.path },
      );
    }
    let chain = chains.get(dir);
    if (!chain) {
      chain = { queue: Promise.resolve(), lastHmac: GENESIS_HMAC, checked: new Set() };
      chains.set(dir, chain);
    }
    // The tail is read again (another process may have appended since), after the appends of
    // this process's other writers of the folder that are still in flight.
    const state = chain;
    const reread = state.queue.then(async () => {
      state.lastHmac = (await findAuditTail(dir)).hmac;
      state.checked.clear();
    });
    state.queue = reread.catch(() => undefined);
    await reread;
    return new AuditLog(dir, keyBytes, state);
  }

  get lastHmacValue(): string {
    return this.chain.lastHmac;
  }

  /** Appends one event; resolves with the entry once it is on disk. Appends are serialized. */
  append(event: AuditEvent): Promise<AuditEntry> {
    const run = this.chain.queue.then(() => this.appendNow(event));
    this.chain.queue = run.catch(() => undefined);
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
      prev_hmac: this.chain.lastHmac,
    };
    const entry: AuditEntry = { ...unsigned, hmac: computeAuditHmac(this.key, unsigned) };
    const file = path.join(this.dir, auditFileName(timestamp));
    if (!this.chain.checked.has(file)) {
      await durableMkdir(this.dir);
      this.chain.checked.add(file);
    }
    try {
      await durableAppendLines(file, auditLine(entry) + "\n");
    } catch (err) {
      throw new Error(`audit: appending to ${file}: ${(err as Error).message}`, { cause: err });
    }
    this.chain.lastHmac = entry.hmac;
    return entry;
  }
}
