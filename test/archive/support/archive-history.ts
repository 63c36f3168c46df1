/**
 * Archives with a known history for the prune and compaction tests: base snapshots and segments
 * in a chosen order, written by the real archiver (src/archive/archiver.ts) to a folder store.
 */
import { appendFile, cp, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Archiver } from "../../../src/archive/archiver.js";
import { listStreams } from "../../../src/archive/streams.js";
import { LocalStore } from "../../../src/storage/local-store.js";
import type { BackupStore } from "../../../src/storage/store.js";
import { appendDecisions, type ArchiveFixture } from "./archive-workspace.js";

export type HistoryStep = { snapshot: true } | { decisions: number };

/** Runs `steps` against `store` (a folder, or any store): a snapshot, or decisions followed by one shipping cycle. */
export async function writeHistory(
  f: ArchiveFixture,
  store: string | BackupStore,
  run: string,
  steps: HistoryStep[],
  madeBefore = 0,
  /** A log stream (path under `.sdd/`) that gets one timed line per decisions step too. */
  log?: string,
): Promise<number> {
  let made = madeBefore;
  if (typeof store === "string") await mkdir(store, { recursive: true });
  for (const step of steps) {
    const snapshot = "snapshot" in step;
    if (!snapshot) {
      await appendDecisions(f.ws, run, step.decisions, made);
      made += step.decisions;
      if (log) {
        await mkdir(path.dirname(f.ws.p(log)), { recursive: true });
        await appendFile(f.ws.p(log), JSON.stringify({ timestamp: Date.now() / 1000, made }) + "\n");
      }
    }
    const archiver = new Archiver({
      store: typeof store === "string" ? new LocalStore(store) : store,
      ws: f.ws,
      intervalMs: 1000,
      // 0: a snapshot on this step; otherwise none falls due.
      snapshotIntervalMs: snapshot ? 0 : Number.MAX_SAFE_INTEGER,
    });
    const r = await archiver.step();
    if (!r) throw new Error(`archiver step failed: ${archiver.health.snapshot().last_error}`);
  }
  return made;
}

/** A copy of a folder store, metadata sidecars included. */
export const copyStore = (from: string, to: string): Promise<void> => cp(from, to, { recursive: true });

/** Every stream file of a restored workspace (WAL runs, audit, ledger, runs): path → bytes. */
export async function restoredStreams(sdd: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const s of await listStreams(sdd)) out.set(s, (await readFile(path.join(sdd, s))).toString("base64"));
  return out;
}
