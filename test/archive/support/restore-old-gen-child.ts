/**
 * Child of restore-old-gen.test.ts: restores run RUN up to seq 99 to load and compile everything,
 * then restores it up to SEQ (`latest`: the newest point) and prints, as one JSON line, how much
 * the old generation grew during that second restore and how many full GCs ran meanwhile. Run with
 * a large initial old space and no memory reducer, so that no full GC frees what the restore left
 * there: the growth is then every byte the restore allocated in (or promoted to) the old
 * generation, garbage included.
 *
 * The growth is read with the sampling heap profiler on. V8 counts an allocation area as used when
 * the main thread takes it for its next old-space objects, and such an area can be hundreds of KB:
 * without an observer the used size moves in steps that large, taken wherever the restore happens
 * to be, and one step over the lines the test compares is more bytes per line than a leak. An
 * allocation observer ends each area at its next sample, so the used size follows the bytes
 * allocated to within a few KB.
 *
 * Usage: node restore-old-gen-child.js STORE SCRATCH AUDIT_KEY RUN SEQ|latest
 */
import { Session } from "node:inspector/promises";
import path from "node:path";
import { PerformanceObserver, constants } from "node:perf_hooks";
import v8 from "node:v8";
import { restoreToPoint, type RestorePoint } from "../../../src/archive/restore-point.js";
import { parseCatalogueLocation } from "../../../src/storage/location.js";
import { storeFor } from "../../../src/storage/open-store.js";

const [storeDir, scratch, auditKeyPath, run, seq] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];

/** Bytes between the sampling heap profiler's samples, which bound V8's allocation areas. */
const SAMPLING_INTERVAL = 4096;

const oldSpaceUsed = (): number =>
  v8.getHeapSpaceStatistics().find((s) => s.space_name === "old_space")!.space_used_size;

const fullGcs: number[] = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    if ((e as unknown as { detail: { kind: number } }).detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR)
      fullGcs.push(e.startTime);
});
observer.observe({ entryTypes: ["gc"] });

const store = await storeFor(parseCatalogueLocation(storeDir), {});
const restore = (name: string, point: RestorePoint) =>
  restoreToPoint(store, point, path.join(scratch, name, ".sdd"), { source: storeDir, auditKeyPath });

/** The old generation's growth while restoring `point`, and the full GCs that ran meanwhile. */
async function measure(name: string, point: RestorePoint) {
  const profiler = new Session();
  profiler.connect();
  await profiler.post("HeapProfiler.startSampling", { samplingInterval: SAMPLING_INTERVAL });
  const from = performance.now();
  const before = oldSpaceUsed();
  const r = await restore(name, point);
  const grown = oldSpaceUsed() - before;
  const to = performance.now();
  await profiler.post("HeapProfiler.stopSampling");
  profiler.disconnect();
  // GC entries arrive on a later turn.
  await new Promise((resolve) => setImmediate(resolve));
  return {
    lines: r.wal[run]!.seq + 1,
    segments: r.segments,
    old_space_grown: grown,
    full_gcs: fullGcs.filter((t) => t >= from && t <= to).length,
  };
}

await restore("warm", { kind: "seq", run, seq: 99 });
const measured = await measure(
  "measured",
  seq === "latest" ? { kind: "latest" } : { kind: "seq", run, seq: Number(seq) },
);
observer.disconnect();
process.stdout.write(JSON.stringify(measured) + "\n");
