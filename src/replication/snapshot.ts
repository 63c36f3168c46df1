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
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, open, readdir, rm, stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { writeBackupArchive } from "../dr/backup.js";
import { inspectArchive, openArchiveFile, restoreFromFile, restoreFromStream } from "../dr/restore.js";
import { durableMkdir, durableRename, durableUnlink, fsyncDir, tempPathFor } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { type ChainTail, GENESIS_HASH, IntegrityError, verifyPrefix } from "./chain.js";
import { replicationDir } from "./epoch.js";
import { WalSource } from "./wal-source.js";

export const BASE_SNAPSHOT = ["runtime", "replication", "base", "snapshot.tar.gz"] as const;

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
 * Checks a WAL file's whole chain (streaming) and cuts it before the first bad line, so that a
 * tampered or broken entry that arrived inside a snapshot never stays in this node's WAL.
 * Returns the integrity error, or null when the chain is sound.
 */
export async function cutAtFirstBreak(file: string, runId: string): Promise<IntegrityError | null> {
  let tail: ChainTail = { seq: -1, hash: GENESIS_HASH };
  let offset = 0;
  let bad: IntegrityError | null = null;
  const input = createReadStream(file, "utf8");
  const rl = createInterface({ input, crlfDelay: Infinity });
  for await (const line of rl) {
    const r = verifyPrefix(runId, tail, [line]);
    if (r.error) {
      bad = r.error;
      break;
    }
    tail = r.tail;
    offset += Buffer.byteLength(line, "utf8") + 1;
  }
  rl.close();
  // Leaving the loop early does not close the file (readline leaves its input open).
  input.destroy();
  if (!bad) return null;
  const fh = await open(file, "r+");
  try {
    await fh.truncate(offset);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return bad;
}

/** Cuts every WAL of the workspace at its first break; returns the errors found. */
export async function cutAllAtFirstBreak(ws: Workspace): Promise<IntegrityError[]> {
  const errors: IntegrityError[] = [];
  for (const name of await readdir(ws.walDir).catch(() => [] as string[])) {
    if (!name.endsWith(".wal.jsonl")) continue;
    const e = await cutAtFirstBreak(path.join(ws.walDir, name), name.slice(0, -".wal.jsonl".length));
    if (e) errors.push(e);
  }
  return errors;
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
  await restoreFromStream(stream, ws.root, { keep: false, force: true, source });
  // The archive carries the leader's own replication files: they are not ours.
  await rm(path.join(replicationDir(ws), "endpoint.json"), { force: true });
  const broken = await cutAllAtFirstBreak(ws);
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
  const dest = ws.p(...BASE_SNAPSHOT);
  await durableMkdir(path.dirname(dest));
  const tmp = tempPathFor(dest);
  try {
    // The stream owns its descriptor: a FileHandle lent to createWriteStream({ autoClose: false })
    // never finishes closing on Node 20, and that hung the follower's refresh forever.
    await pipeline(stream, createWriteStream(tmp, { flags: "wx", mode: 0o600 }));
    const fh = await open(tmp, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const summary = await inspectArchive(await openArchiveFile(tmp), { label: "base snapshot" });
    await durableRename(tmp, dest);
    return { file: BASE_SNAPSHOT.join("/"), wal_positions: walPositionsOf(summary.manifest_raw) };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function durableCopy(from: string, to: string): Promise<void> {
  const tmp = tempPathFor(to);
  await copyFile(from, tmp);
  const fh = await open(tmp, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await durableRename(tmp, to);
}

/**
 * Promotion: when a refreshed base snapshot is held, restore it over the workspace, then put back
 * this follower's WAL where it is longer than the snapshot's (it always extends it: both are
 * prefixes of the leader's files) and its replication files. Returns the snapshot used, or null.
 */
export async function materializeFromBase(ws: Workspace): Promise<string | null> {
  const file = ws.p(...BASE_SNAPSHOT);
  if (!(await stat(file).catch(() => undefined))) return null;
  // Move the archive out of the tree it is about to replace.
  const outside = path.join(path.dirname(ws.root), `.${path.basename(ws.root)}.base-snapshot.tar.gz`);
  await durableRename(file, outside);
  const r = await restoreFromFile(outside, ws.root, {
    keep: true,
    force: true,
    source: "replication base snapshot",
  });
  const kept = r.kept!;
  const keptWs = { walDir: path.join(kept, "runtime", "wal") };
  const restored = new WalSource(ws);
  await restored.refresh();
  const restoredTails = restored.tails();
  restored.close();
  for (const name of await readdir(keptWs.walDir).catch(() => [] as string[])) {
    if (!name.endsWith(".wal.jsonl")) continue;
    const run = name.slice(0, -".wal.jsonl".length);
    const mine = (await stat(path.join(keptWs.walDir, name))).size;
    const theirs = (await stat(ws.walFile(run)).catch(() => undefined))?.size ?? -1;
    if (mine > theirs || !restoredTails.has(run)) {
      await durableMkdir(ws.walDir);
      await durableCopy(path.join(keptWs.walDir, name), ws.walFile(run));
    }
  }
  await durableMkdir(replicationDir(ws));
  for (const f of ["role.json", "epoch.json"]) {
    const src = path.join(kept, "runtime", "replication", f);
    if (await stat(src).catch(() => undefined)) await durableCopy(src, path.join(replicationDir(ws), f));
  }
  await rm(path.join(replicationDir(ws), "endpoint.json"), { force: true });
  await fsyncDir(replicationDir(ws));
  await durableUnlink(outside);
  await rm(kept, { recursive: true, force: true });
  const broken = await cutAllAtFirstBreak(ws);
  if (broken.length > 0) throw broken[0];
  return outside;
}
