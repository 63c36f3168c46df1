/**
 * The last good backup, for status and metrics ("last backup age", RPO without followers).
 * Reads the shared record `runs/backups.jsonl` (owned by `dr backup`).
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Workspace } from "../workspace/layout.js";

export interface BackupInfo {
  created_at: string;
  location: string;
  age_seconds: number;
}

export async function lastBackupInfo(ws: Workspace, now = Date.now()): Promise<BackupInfo | null> {
  type Row = { created_at?: unknown; location?: unknown; verified?: unknown };
  let last: Row | null = null;
  try {
    const rl = createInterface({
      input: createReadStream(ws.p("runs", "backups.jsonl"), "utf8"),
      crlfDelay: Infinity,
    });
    for await (const line of rl) {
      if (!line.trim()) continue;
      try {
        const row = JSON.parse(line) as Row | null;
        if (row && row.verified !== false) last = row;
      } catch {
        // a torn last row of an interrupted append: ignore it
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  if (!last) return null;
  const created =
    typeof last.created_at === "number"
      ? last.created_at * 1000
      : typeof last.created_at === "string"
        ? Date.parse(last.created_at)
        : NaN;
  if (Number.isNaN(created)) return null;
  return {
    created_at: new Date(created).toISOString(),
    location: typeof last.location === "string" ? last.location : "",
    age_seconds: Math.max(0, (now - created) / 1000),
  };
}
