/**
 * A generation's base snapshot: an ordinary `dr backup` archive streamed into the store, then
 * its index (where each stream ends in it). The index is written only once the archive is
 * stored, so an index always names a complete snapshot.
 */
import { PassThrough } from "node:stream";
import { writeBackupArchive, type BackupOptions } from "../dr/backup.js";
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import { SNAPSHOT_FORMAT, putJson, type SnapshotIndex } from "./catalog.js";
import { schemeOf } from "./sealing.js";
import { snapshotIndexKey, snapshotKey, walRunOf } from "./names.js";
import { endAt, listStreams, type StreamEnd } from "./streams.js";

export interface SnapshotRequest {
  store: BackupStore;
  ws: Workspace;
  generation: string;
  number: number;
  backup: Pick<BackupOptions, "password" | "recipients" | "auditKeyPath">;
}

/**
 * Stores the snapshot, then its index. The index records the WAL breaks the snapshot holds as
 * found (the manifest's `wal_breaks`: the workspace was damaged when it was taken; a backup copies
 * damage, it never hides it), so every archiver that resumes the generation names them again.
 */
export async function takeBaseSnapshot(req: SnapshotRequest): Promise<SnapshotIndex> {
  const { store, ws, generation, number } = req;
  const key = snapshotKey(generation, number, schemeOf(req.backup));
  const startedAt = Date.now();
  const pipe = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stored = store.put(key, pipe);
  stored.catch(() => {});
  let result;
  try {
    result = await writeBackupArchive(ws, pipe, req.backup);
  } catch (err) {
    pipe.destroy(err as Error);
    await stored.catch(() => {});
    throw err;
  }
  const put = await stored;
  if (put.sha256 !== result.sha256) {
    throw new Error(`snapshot ${store.describe(key)}: stored sha256 ${put.sha256}, wrote ${result.sha256}`);
  }
  const sizes = new Map(result.manifest.files.map((f) => [f.path, f.size]));
  const streams: Record<string, StreamEnd> = {};
  for (const stream of await listStreams(ws.root)) {
    const length = sizes.get(stream);
    if (length === undefined) continue;
    const run = walRunOf(stream);
    const end = await endAt(ws.p(stream), stream, length, run ? result.manifest.state.wal[run] : undefined);
    if (end) streams[stream] = end;
  }
  const index: SnapshotIndex = {
    format: SNAPSHOT_FORMAT,
    generation,
    number,
    key,
    sha256: result.sha256,
    size_bytes: result.size_bytes,
    started_at: startedAt,
    completed_at: Date.now(),
    streams,
    ...(result.manifest.wal_breaks?.length ? { wal_breaks: result.manifest.wal_breaks } : {}),
  };
  await putJson(store, snapshotIndexKey(generation, number), index);
  return index;
}

/**
 * Deletes the archives of interrupted snapshots (stored, never indexed: nothing refers to them)
 * once a later snapshot is indexed; returns those still there (a delete that failed is tried
 * again after the next snapshot, and `dr prune` removes them too).
 */
export async function removeInterrupted(store: BackupStore, orphans: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const key of orphans) await store.delete(key).catch(() => left.push(key));
  return left;
}
