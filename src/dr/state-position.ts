/**
 * Where the state stood when a backup was taken, and how much of each append-only log to copy:
 * a WAL is copied only up to its last complete entry whose hash verifies (a torn or half-written
 * tail is left out), an audit day file or other JSONL log up to its last complete line.
 * Only the end of each file is read.
 */
import { closeSync, openSync, readSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { canonicalJson, parseJson, type JsonValue } from "../json/canonical.js";
import type { StatePosition, WalPosition } from "./manifest.js";

const TAIL_WINDOW = 256 * 1024;
const MAX_WINDOW = 16 * 1024 * 1024;

export const WAL_FILE = /^runtime\/wal\/([^/]+)\.wal\.jsonl$/;
const LINE_LOGS = [/^audit\/[^/]+\.jsonl$/, /^runtime\/wal\/idempotency\.jsonl$/];

function readRange(file: string, start: number, length: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, start + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** The WAL entry a line holds when its entry_hash verifies, else undefined. */
export function verifiedWalEntry(line: string): WalPosition | undefined {
  let obj: JsonValue;
  try {
    obj = parseJson(line);
  } catch {
    return undefined;
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return undefined;
  const rec = obj as Record<string, JsonValue>;
  const hash = rec.entry_hash;
  const seq = rec.seq;
  if (typeof hash !== "string" || typeof seq !== "number") return undefined;
  const body = { ...rec };
  delete body.entry_hash;
  const actual = createHash("sha256").update(canonicalJson(body)).digest("hex");
  return actual === hash ? { seq, entry_hash: hash } : undefined;
}

export interface Cut {
  /** Bytes to copy (a prefix of the file). */
  length: number;
  position: WalPosition | null;
  /** Bytes left out at the end (a torn or unverifiable tail). */
  dropped: number;
}

/**
 * The prefix of a WAL that ends with its last complete, hash-valid entry (at most `maxSeq` when
 * a paused orchestrator told us its position). Reads backwards from `size` in growing windows.
 */
export function walCut(file: string, size: number, maxSeq?: number): Cut {
  if (size === 0) return { length: 0, position: null, dropped: 0 };
  for (let window = TAIL_WINDOW; ; window *= 2) {
    const start = Math.max(0, size - window);
    const buf = readRange(file, start, size - start);
    // Complete lines end with '\n'; walk them from the last one back.
    let end = buf.lastIndexOf(0x0a);
    while (end >= 0) {
      const prev = buf.lastIndexOf(0x0a, end - 1);
      if (prev < 0 && start > 0) break; // the line starts before the window: widen it
      const line = buf.subarray(prev + 1, end).toString("utf8");
      const pos = verifiedWalEntry(line);
      if (pos && (maxSeq === undefined || pos.seq <= maxSeq)) {
        const length = start + end + 1;
        return { length, position: pos, dropped: size - length };
      }
      end = prev;
    }
    if (start === 0 || window >= MAX_WINDOW) {
      // No verifiable entry anywhere (or in a very long tail): this is not a torn tail but a
      // file we do not understand; copy it as is and let `dr verify` report it.
      return { length: size, position: null, dropped: 0 };
    }
  }
}

/** Prefix of a line-oriented log up to its last '\n' (a half-written last line is left out). */
export function lineLogCut(file: string, size: number): Cut {
  if (size === 0) return { length: 0, position: null, dropped: 0 };
  for (let window = TAIL_WINDOW; ; window *= 2) {
    const start = Math.max(0, size - window);
    const buf = readRange(file, start, size - start);
    const nl = buf.lastIndexOf(0x0a);
    if (nl >= 0) return { length: start + nl + 1, position: null, dropped: size - (start + nl + 1) };
    if (start === 0 || window >= MAX_WINDOW) return { length: size, position: null, dropped: 0 };
  }
}

export function isLineLog(rel: string): boolean {
  return LINE_LOGS.some((re) => re.test(rel));
}

/** The last `hmac` of the newest audit day file (by name) among the copied prefixes. */
export function auditPosition(
  root: string,
  copied: Map<string, number>,
): StatePosition["audit"] {
  const days = [...copied.keys()].filter((r) => /^audit\/[^/]+\.jsonl$/.test(r)).sort();
  for (let i = days.length - 1; i >= 0; i--) {
    const rel = days[i]!;
    const len = copied.get(rel)!;
    if (len === 0) continue;
    const buf = readRange(path.join(root, rel), Math.max(0, len - TAIL_WINDOW), Math.min(len, TAIL_WINDOW));
    const lines = buf.toString("utf8").split("\n").filter((l) => l.trim());
    const last = lines[lines.length - 1];
    try {
      const rec = JSON.parse(last ?? "") as { hmac?: unknown };
      if (typeof rec.hmac === "string") return { file: rel, last_hmac: rec.hmac };
    } catch {
      // not an audit line: report no position rather than a wrong one
    }
    return null;
  }
  return null;
}

/** The newest checkpoint (by metadata.created_at, then name) among the archived files. */
export function checkpointPosition(root: string, rels: string[]): StatePosition["checkpoint"] {
  let best: { id: string; file: string; created: string } | null = null;
  for (const rel of rels) {
    if (!/^runtime\/checkpoints\/checkpoint-[^/]+\.json$/.test(rel)) continue;
    try {
      const doc = JSON.parse(readFileSync(path.join(root, rel), "utf8")) as {
        metadata?: { checkpoint_id?: unknown; created_at?: unknown };
      };
      const id = String(doc.metadata?.checkpoint_id ?? path.basename(rel, ".json").slice("checkpoint-".length));
      const created = String(doc.metadata?.created_at ?? "");
      if (!best || created > best.created || (created === best.created && rel > best.file)) {
        best = { id, file: rel, created };
      }
    } catch {
      // an unreadable checkpoint is not the newest valid one; verify reports it
    }
  }
  return best ? { id: best.id, file: best.file } : null;
}

/** Lists the WAL run ids in a workspace (for snapshot positions). */
export function listWalRuns(root: string): string[] {
  try {
    return readdirSync(path.join(root, "runtime", "wal"))
      .filter((n) => n.endsWith(".wal.jsonl"))
      .map((n) => n.slice(0, -".wal.jsonl".length))
      .sort();
  } catch {
    return [];
  }
}
