/**
 * Base snapshots for replication, on top of the DR archive format (`src/dr/`):
 *  - the leader streams `writeBackupArchive` (a consistent snapshot whose manifest records the WAL
 *    positions) as `GET /snapshot`;
 *  - a follower bootstraps by restoring that stream into its `.sdd` (`restoreFromStream`: staged,
 *    checked against the manifest, swapped in), then keeps its own replication identity;
 *  - it refreshes the snapshot on an interval into `runtime/replication/base/snapshot.tar.gz`
 *    (checked before it replaces the previous one) for the state that is not in the WAL;
 *  - promotion materializes the workspace from that snapshot plus the follower's WAL after it.
 */
import { createWriteStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { writeBackupArchive } from "../dr/backup.js";
import { inspectArchive, openArchiveFile, restoreFromFile, restoreFromStream } from "../dr/restore.js";
import { listWalRunFiles } from "../wal/run-files.js";
import { cutAllAtFirstBreak } from "../wal/tail-repair.js";
import {
  durableCopy,
  durableMkdir,
  durableRename,
  durableUnlink,
  fsyncDir,
  fsyncFile,
  tempPathFor,
} from "../workspace/durable.js";
import { Workspace } from "../workspace/layout.js";
import { replicationDir } from "./epoch.js";
import { carryQuarantines } from "./follower-bootstrap.js";
import { WalSource } from "./wal-source.js";

/** The refreshed base snapshot a promotion starts from (relative to `.sdd/`, as the role records it). */
const baseSnapshotFile = (ws: Workspace): string => path.join(replicationDir(ws), "base", "snapshot.tar.gz");

/** The WAL positions (run → seq) a manifest records. */
export function walPositionsOf(manifest: Record<string, unknown>): Record<string, number> {
  const wal = (manifest.state as { wal?: Record<string, { seq: number } | null> } | undefined)?.wal ?? {};
  const out: Record<string, number> = {};
  for (const [run, pos] of Object.entries(wal)) out[run] = pos ? pos.seq : -1;
  return out;
}

/** Leader: `GET /snapshot`. */
export async function serveSnapshot(ws: Workspace, res: ServerResponse): Promise<void> {
  res.writeHead(200, { "content-type": "application/gzip" });
  await writeBackupArchive(ws, res);
}

/**
 * Follower bootstrap: restore the leader's snapshot into the workspace and check every WAL chain
 * in it (cut before a break, then throw the IntegrityError); returns the WAL positions.
 */
export async function installSnapshot(
  stream: IncomingMessage,
  ws: Workspace,
  source: string,
): Promise<Record<string, number>> {
  // Kept, not removed by the swap: the quarantined WALs in it move over first.
  const { kept } = await restoreFromStream(stream, ws.root, { keep: true, source });
  if (kept) {
    await carryQuarantines(kept, ws);
    await rm(kept, { recursive: true, force: true });
  }
  // The archive carries the leader's own replication files: they are not ours.
  await rm(path.join(replicationDir(ws), "endpoint.json"), { force: true });
  const broken = await cutAllAtFirstBreak(ws.walDir);
  if (broken.length > 0) throw broken[0];
  const src = new WalSource(ws);
  await src.refresh();
  const out: Record<string, number> = {};
  for (const r of src.listRuns()) out[r.run_id] = r.last_seq;
  src.close();
  return out;
}

/** Follower refresh: store the snapshot (checked first) as the base for a promotion. */
export async function storeSnapshot(
  stream: IncomingMessage,
  ws: Workspace,
): Promise<{ file: string; wal_positions: Record<string, number> }> {
  const dest = baseSnapshotFile(ws);
  await durableMkdir(path.dirname(dest));
  const tmp = tempPathFor(dest);
  try {
    // The stream owns its descriptor: a FileHandle lent to createWriteStream({ autoClose: false })
    // never finishes closing on Node 20, and that hung the follower's refresh forever.
    await pipeline(stream, createWriteStream(tmp, { flags: "wx", mode: 0o600 }));
    await fsyncFile(tmp);
    const summary = await inspectArchive(await openArchiveFile(tmp), { label: "base snapshot" });
    await durableRename(tmp, dest);
    return {
      file: path.relative(ws.root, dest).split(path.sep).join("/"),
      wal_positions: walPositionsOf(summary.manifest_raw),
    };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Promotion: when a refreshed base snapshot is held, restore it over the workspace, then put back
 * this follower's WAL where it is longer than the snapshot's (it always extends it: both are
 * prefixes of the leader's files) and its replication files. Returns the snapshot used, or null.
 */
export async function materializeFromBase(ws: Workspace): Promise<string | null> {
  const file = baseSnapshotFile(ws);
  if (!(await stat(file).catch(() => undefined))) return null;
  // Move the archive out of the tree it is about to replace.
  const outside = path.join(path.dirname(ws.root), `.${path.basename(ws.root)}.base-snapshot.tar.gz`);
  await durableRename(file, outside);
  const r = await restoreFromFile(outside, ws.root, {
    keep: true,
    lockHeldByCaller: true,
    source: "replication base snapshot",
  });
  const kept = r.kept!;
  const keptWs = new Workspace(kept);
  const restored = new WalSource(ws);
  await restored.refresh();
  const restoredTails = restored.tails();
  restored.close();
  for (const { run_id: run, file: keptWal } of await listWalRunFiles(keptWs.walDir).catch(() => [])) {
    const mine = (await stat(keptWal)).size;
    const theirs = (await stat(ws.walFile(run)).catch(() => undefined))?.size ?? -1;
    if (mine > theirs || !restoredTails.has(run)) {
      await durableMkdir(ws.walDir);
      await durableCopy(keptWal, ws.walFile(run));
    }
  }
  await durableMkdir(replicationDir(ws));
  for (const f of ["role.json", "epoch.json"]) {
    const src = path.join(replicationDir(keptWs), f);
    if (await stat(src).catch(() => undefined)) await durableCopy(src, path.join(replicationDir(ws), f));
  }
  await rm(path.join(replicationDir(ws), "endpoint.json"), { force: true });
  await fsyncDir(replicationDir(ws));
  await carryQuarantines(kept, ws);
  await durableUnlink(outside);
  await rm(kept, { recursive: true, force: true });
  const broken = await cutAllAtFirstBreak(ws.walDir);
  if (broken.length > 0) throw broken[0];
  return outside;
}
