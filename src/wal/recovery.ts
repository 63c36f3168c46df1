/**
 * Recovery helpers: the uncommitted index, closed markers, orphaned claims.
 */
import { constants as fsc } from "node:fs";
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import { atomicWriteFile, fsyncDir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";

/** `runtime/wal/uncommitted.idx.json`: JSONL rows {run_id, seq, entry_hash}, one per intent. */
export function uncommittedIndexPath(ws: Workspace): string {
  return path.join(ws.walDir, "uncommitted.idx.json");
}

export interface UncommittedRow {
  run_id: string;
  seq: number;
  entry_hash: string;
}

/** One index line, in the Python field order. */
export function uncommittedRowLine(row: UncommittedRow): string {
  return JSON.stringify({ run_id: row.run_id, seq: row.seq, entry_hash: row.entry_hash }) + "\n";
}

/** Opens the index for appending (creating it durably). The writer keeps this handle open. */
export async function openUncommittedIndexForAppend(ws: Workspace) {
  const file = uncommittedIndexPath(ws);
  try {
    return await open(file, fsc.O_WRONLY | fsc.O_APPEND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const fh = await open(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
    await fsyncDir(path.dirname(file));
    return fh;
  }
}

/** `<run>.wal.closed`: written atomically when a run shuts down cleanly. */
export function closedMarkerPath(ws: Workspace, runId: string): string {
  return path.join(ws.walDir, `${runId}.wal.closed`);
}

export interface ClosedMarker {
  run_id: string;
  closed_at: string;
  /** Newest seq in the run (-1 when the run has no entry). */
  last_seq: number;
  last_hash: string;
  reason?: string;
}

/** Marks a run as cleanly closed (atomic replace, folder fsynced). */
export async function writeClosedMarker(ws: Workspace, marker: ClosedMarker): Promise<void> {
  await atomicWriteFile(closedMarkerPath(ws, marker.run_id), JSON.stringify(marker) + "\n");
}

/** The run's closed marker, or undefined when the run is not closed (or the marker is unreadable). */
export async function readClosedMarker(ws: Workspace, runId: string): Promise<ClosedMarker | undefined> {
  try {
    const m = JSON.parse(await readFile(closedMarkerPath(ws, runId), "utf8")) as ClosedMarker;
    return typeof m === "object" && m !== null && m.run_id === runId ? m : undefined;
  } catch {
    return undefined;
  }
}
