/**
 * Objects and bytes a WAL archive costs per day at 1 decision/s, before and after compaction
 * (`npm run bench:archive-objects`, and the `after_compaction` figure of `npm run bench:archive`).
 *
 * A short run stands for the day: N simulated seconds, each one decision (a WAL entry, fsynced
 * by the WAL writer, plus one line of its run record) followed by one shipping cycle (the
 * archiver's default 1 s interval) into a folder store. Counts and bytes are scaled by
 * 86,400 / N. After: `dr archive-compact`'s code with the target size scaled by the same factor,
 * so the merged-object count is the one a whole day at the real target gives (objects per
 * stream = ceil(stream bytes per day / target)). The base snapshot (one a day at the default
 * --snapshot-interval) and the generation record are counted on both sides.
 *
 * Background: the same cycles shipped to a second store by an archiver's background compaction
 * (compactOwnGeneration, tiered, after every COMPACT_FANOUT segments, the scaled target): the
 * segments left at the end of the run stand for the day's, as for "after"; the bytes its merges
 * wrote are scaled like the archiver's.
 */
import { appendFile, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { listArchive } from "../../src/archive/catalog.js";
import { COMPACT_FANOUT } from "../../src/archive/archiver.js";
import { compactArchive, compactOwnGeneration } from "../../src/archive/compact.js";
import { takeBaseSnapshot } from "../../src/archive/base-snapshot.js";
import { openGeneration } from "../../src/archive/generation.js";
import { shipCycle } from "../../src/archive/shipper.js";
import { LocalStore } from "../../src/storage/local-store.js";
import { WalWriter } from "../../src/wal/writer.js";
import { initWorkspace } from "../../src/workspace/layout.js";

const DAY_S = 86_400;
async function storeFigures(dir: string): Promise<{ objects: number; segments: number; bytes: number }> {
  let objects = 0;
  let segments = 0;
  let bytes = 0;
  for (const name of await readdir(dir)) {
    if (name.startsWith(".")) continue;
    objects++;
    if (name.includes(".seg.")) segments++;
    bytes += (await stat(path.join(dir, name))).size;
  }
  return { objects, segments, bytes };
}

export async function archiveObjectsPerDay(simSeconds: number, target: number) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-archive-objects-"));
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, "project", ".sdd"));
    const store = new LocalStore(path.join(dir, "store"));
    await mkdir(store.root, { recursive: true });
    const gen = await openGeneration(store, ws, { keys: {} });
    const snap = await takeBaseSnapshot({
      store,
      ws,
      generation: gen.generation,
      number: 0,
      backup: {},
    });
    for (const [stream, end] of Object.entries(snap.streams)) gen.ends.set(stream, end);
    const scaledTarget = Math.max(1, Math.round((target * simSeconds) / DAY_S));
    const bgStore = new LocalStore(path.join(dir, "store-background"));
    await mkdir(bgStore.root, { recursive: true });
    const bgGen = await openGeneration(bgStore, ws, { keys: {} });
    for (const [stream, end] of Object.entries(snap.streams)) bgGen.ends.set(stream, end);
    const bg = { stored: 0, puts: 0, rewritten: 0, ms: 0 };
    const run = "run-bench";
    const wal = await WalWriter.open(ws, run);
    const runLog = ws.p("runs", `${run}.jsonl`);
    await mkdir(path.dirname(runLog), { recursive: true });
    try {
      for (let i = 0; i < simSeconds; i++) {
        await wal.append({
          decision_type: "task_claimed",
          inputs: { task_id: `T-${i}`, attempt: 1 },
          committed: true,
        });
        await appendFile(
          runLog,
          JSON.stringify({ timestamp: Date.now() / 1000, event: "claimed", task_id: `T-${i}` }) + "\n",
        );
        await shipCycle({ store, ws, generation: gen.generation, ends: gen.ends, codec: gen.codec });
        bg.stored += (
          await shipCycle({
            store: bgStore,
            ws,
            generation: bgGen.generation,
            ends: bgGen.ends,
            codec: bgGen.codec,
          })
        ).segments;
        if (bg.stored >= COMPACT_FANOUT) {
          bg.stored = 0;
          const t = performance.now();
          const r = await compactOwnGeneration(bgStore, bgGen.generation, bgGen.codec, {
            targetBytes: scaledTarget,
            fanout: COMPACT_FANOUT,
          });
          bg.ms += performance.now() - t;
          bg.puts += r.merged.length;
          bg.rewritten += r.merged.reduce((n, m) => n + m.bytes, 0);
        }
      }
    } finally {
      await wal.close();
    }
    const scale = DAY_S / simSeconds;
    const perDay = (
      f: { objects: number; segments: number; bytes: number },
      fixed: number,
      fixedBytes: number,
    ) => ({
      objects: Math.round((f.objects - fixed) * scale) + fixed,
      segment_objects: Math.round(f.segments * scale),
      bytes: Math.round((f.bytes - fixedBytes) * scale) + fixedBytes,
    });
    const fixedObjects = 3; // generation record, snapshot and its index: once a day, not per decision
    const fixedBytes = (await storeFigures(store.root)).bytes - (await segmentBytes(store.root));
    const before = perDay(await storeFigures(store.root), fixedObjects, fixedBytes);
    const t0 = performance.now();
    const compacted = await compactArchive(store, await listArchive(store), { targetBytes: scaledTarget });
    const compactMs = performance.now() - t0;
    const after = perDay(await storeFigures(store.root), fixedObjects, fixedBytes);
    // Merged objects do not scale with the run: the scaled target already made them a day's count.
    after.segment_objects = compacted.segments_after;
    after.objects = fixedObjects + compacted.segments_after;
    const bgSegments = (await storeFigures(bgStore.root)).segments;
    return {
      simulated_seconds: simSeconds,
      decisions_per_second: 1,
      streams: 2,
      target_bytes: target,
      before_per_day: before,
      after_per_day: after,
      objects_ratio: Number((before.objects / after.objects).toFixed(1)),
      // Compaction lowers what is stored and listed, not what is sent: the archiver still puts
      // one object per stream per interval, and compaction adds a delete for each of them.
      requests_per_day: {
        archiver_puts: before.segment_objects,
        compaction_puts: after.segment_objects,
        compaction_deletes: before.segment_objects,
      },
      compaction_ms_for_the_run: Math.round(compactMs),
      // The archiver's own background compaction: what a day leaves, and what its merges cost.
      background_per_day: {
        objects: fixedObjects + bgSegments,
        segment_objects: bgSegments,
        compaction_puts: Math.round(bg.puts * scale),
        compaction_rewritten_bytes: Math.round(bg.rewritten * scale),
        compaction_ms: Math.round(bg.ms * scale),
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function segmentBytes(dir: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(dir))
    if (!name.startsWith(".") && name.includes(".seg.")) n += (await stat(path.join(dir, name))).size;
  return n;
}
