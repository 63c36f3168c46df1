/**
 * bench:archive — the continuous WAL archive (src/archive/), against a folder store and the
 * S3-compatible server (s3rver in its own process on 127.0.0.1):
 *
 * - RPO: time from a WAL entry's local fsync to the end of the cycle that stored it, p50/p99, at
 *   100 and 1,000 decisions/s, with the default interval (1 s) and with `--sync` (the commit
 *   gate); baseline: the store's round trip (a small put), measured in the same run.
 * - Overhead on the WAL's throughput at 64 in flight, with the archiver shipping (100 ms interval,
 *   background compaction at its default as in `start --archive-to` and `dr archive`) in the
 *   writer's process (on its own thread, as `start --archive-to` runs it) and as `dr archive` in
 *   its own, to S3 and to a folder; each run against the writer alone run just before and just
 *   after it, the median of those ratios the row's figure; goal >= 0.95 each. A diagnostic row
 *   with the folder on tmpfs (another device than the WAL's) tells the store's disk writes from
 *   the archiver's own cost. Each archiver is timed at its steady state, after its start-up and a
 *   warm-up it has caught up with (bench/support/archive-overhead.ts). CPU per append of the
 *   writer's process (the in-process archiver's thread included) and of its main thread alone,
 *   per entry of `dr archive`'s and of the S3 server's process; where the writer's thread spent
 *   each append more than alone (CPU, waiting for a core, blocked in its fdatasync); bytes the
 *   archiver wrote per WAL byte (segments, merges, status).
 * - Restore to a point `--decisions` decisions after its snapshot (default 10,000, 100,000 and
 *   the issue's 1,000,000; `dr archive-restore --latest` from a folder and from S3, a whole
 *   process: wall and peak RSS) against `dr restore` of a backup of the same state.
 * - Objects and bytes per day at 1 decision/s, from the segments measured per cycle.
 *
 * Usage: npm run bench:archive -- --json (`--help` lists the options).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Archiver } from "../src/archive/archiver.js";
import { storeFor } from "../src/storage/open-store.js";
import { parseCatalogueLocation } from "../src/storage/location.js";
import type { BackupStore } from "../src/storage/store.js";
import { WalWriter } from "../src/wal/writer.js";
import { initWorkspace, type Workspace } from "../src/workspace/layout.js";
import {
  absoluteGoal,
  measureProcess,
  median,
  ratioGoal,
  round,
  type Goal,
  type ProcessCost,
} from "./support/measure.js";
import { archiveObjectsPerDay } from "./support/archive-objects.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";
import { launcherEnv, launcherFlags } from "../src/workspace/launcher.js";
import { overheadRun, type OverheadRun, type OverheadStore } from "./support/archive-overhead.js";

/** Simulated seconds of the objects-per-day run that compaction is measured on (scaled to a day). */
const COMPACTION_SECONDS = 120;
const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, "..", "..", "bin", "bernstein");
const SECTION_NAMES = ["rpo", "overhead", "objects", "restore"];
const options = benchOptions({
  invocation: "npm run bench:archive --",
  about:
    "The continuous WAL archive against a folder and an S3-compatible server: RPO, overhead, objects, restore.",
  options: {
    json: JSON_OUTPUT,
    seconds: { kind: "number", default: 3, min: 1, help: "seconds of appends of each RPO row" },
    decisions: {
      kind: "string",
      default: "10000,100000,1000000",
      value: "N[,N...]",
      pattern: /^[1-9]\d*(,[1-9]\d*)*$/,
      help: "decisions after the snapshot of each point-restore row",
    },
    only: {
      kind: "string",
      default: SECTION_NAMES.join(","),
      value: "SECTION[,SECTION...]",
      pattern: new RegExp(`^(${SECTION_NAMES.join("|")})(,(${SECTION_NAMES.join("|")}))*$`),
      help: `the sections to run, of ${SECTION_NAMES.join(", ")}`,
    },
    rounds: { kind: "number", default: 4, integer: true, min: 1, help: "rounds of the overhead rows" },
    "overhead-seconds": { kind: "number", default: 2, min: 0.5, help: "timed seconds of each overhead run" },
    "no-tmpfs-row": { kind: "flag", help: "leave out the overhead row of a folder on tmpfs (shorter)" },
  },
});
const json = options.json;
const SECONDS = options.seconds;
/** Decisions after the snapshot of each restore row: RSS must not grow with them. */
const RESTORE_DECISIONS = options.decisions.split(",").map(Number);
const SECTIONS = new Set(options.only.split(","));
const log = (m: string): void => void (json ? undefined : process.stderr.write(m + "\n"));

const S3_ENV = {
  AWS_ACCESS_KEY_ID: "S3RVER",
  AWS_SECRET_ACCESS_KEY: "S3RVER",
  AWS_REGION: "us-east-1",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
};

async function startS3(): Promise<{ endpoint: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [path.join(here, "support", "s3-server-child.js"), "bench"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (c) => reject(new Error(`s3 server exited ${c}`)));
  });
  return { endpoint: (JSON.parse(first) as { endpoint: string }).endpoint, child };
}

interface Site {
  name: "folder" | "s3";
  open(prefix: string): Promise<BackupStore>;
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

async function freshWorkspace(root: string, name: string): Promise<Workspace> {
  const { workspace } = await initWorkspace(path.join(root, name, ".sdd"));
  return workspace;
}

const decision = (i: number) => ({
  decision_type: "task_claimed",
  inputs: { task_id: `T-${i}`, attempt: 1 },
  committed: true,
});

/** The store's round trip: median of small puts (a segment's size), in ms. */
async function roundTripMs(store: BackupStore): Promise<number> {
  const body = randomBytes(2048);
  const times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    await store.put(`rtt-${i}`, Readable.from([body]));
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Appends at `rate`/s for SECONDS; per entry, fsync → stored latency (ms). Also segments per cycle. */
async function rpoRun(root: string, site: Site, rate: number, sync: boolean, seconds = SECONDS) {
  const label = `${site.name}-${rate}-${sync ? "sync" : "interval"}`;
  const ws = await freshWorkspace(root, label);
  const store = await site.open(label);
  const durableAt = new Map<number, number>();
  const latencies: number[] = [];
  let segments = 0;
  let bytes = 0;
  let storedBytes = 0;
  let cycles = 0;
  let storedThrough = -1;
  const archiver = new Archiver({
    store,
    ws,
    intervalMs: 1000,
    snapshotIntervalMs: 86_400_000,
    sync,
    log: (e) => {
      if (e.event !== "cycle") return;
      const now = performance.now();
      cycles++;
      segments += e.segments;
      bytes += e.bytes;
      storedBytes += e.stored_bytes;
      const seq = Math.max(-1, ...Object.values(e.wal));
      for (let s = storedThrough + 1; s <= seq; s++) {
        const t = durableAt.get(s);
        if (t !== undefined) latencies.push(now - t);
      }
      storedThrough = Math.max(storedThrough, seq);
    },
  });
  await archiver.step();
  const wal = await WalWriter.open(ws, "run-bench", {
    commitGate: sync ? (pos) => archiver.shippedThrough(pos) : undefined,
  });
  wal.onDurable((pos) => {
    const now = performance.now();
    for (let s = pos.seq; s >= 0 && !durableAt.has(s); s--) durableAt.set(s, now);
  });
  if (!sync) archiver.start((err) => log(`archiver: ${String(err)}`));
  const total = rate * seconds;
  const pending: Promise<unknown>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(wal.append(decision(i)));
  }
  await Promise.all(pending);
  await archiver.finish();
  await wal.close();
  return {
    label,
    entries: total,
    p50_ms: round(percentile(latencies, 50), 1),
    p99_ms: round(percentile(latencies, 99), 1),
    measured: latencies.length,
    cycles,
    segments,
    bytes,
    storedBytes,
  };
}

/** `n` decisions with 64 in flight, then the WAL closed. */
async function appendMany(ws: Workspace, n: number): Promise<void> {
  const wal = await WalWriter.open(ws, "run-bench");
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < n; i++) {
    const p = wal.append(decision(i)).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 64) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await wal.close();
}

/** Copies every object of `from` to `to`, with its metadata (a segment's index is its metadata). */
async function copyStore(from: BackupStore, to: BackupStore): Promise<void> {
  for (const o of await from.list()) {
    const info = await from.head(o.key);
    await to.put(o.key, await from.get(o.key), { metadata: info?.metadata ?? {} });
  }
}

/**
 * Point-in-time restore `decisions` past its snapshot, from a folder and from S3 (`s3Endpoint`),
 * against a full restore of the same state.
 */
async function restoreRun(root: string, decisions: number, s3Endpoint: string) {
  const dir = path.join(root, `restore-${decisions}`);
  const ws = await freshWorkspace(dir, "source");
  const storeDir = path.join(dir, "store");
  await mkdir(storeDir);
  const keyFile = path.join(dir, "audit.key");
  await writeFile(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 });
  const store = await storeFor(parseCatalogueLocation(storeDir), {});
  const archiver = new Archiver({ store, ws, intervalMs: 1000, snapshotIntervalMs: 86_400_000 });
  await archiver.step(); // the snapshot: an empty WAL
  archiver.start(() => {});
  await appendMany(ws, decisions);
  await archiver.finish();
  process.env.BERNSTEIN_AUDIT_KEY_PATH = keyFile;
  const backup = path.join(dir, "full.tar.gz");
  const cli = (sdd: string, ...argv: string[]) =>
    measureProcess([process.execPath, ...launcherFlags(), CLI, "--sdd", sdd, ...argv], [0], launcherEnv());
  cli(ws.root, "dr", "backup", "--to", backup);
  const pointRestore = (target: string, ...from: string[]) =>
    cli(path.join(dir, target, ".sdd"), "dr", "archive-restore", "--from", ...from, "--latest", "--json");
  const pitr = pointRestore("pitr", storeDir);
  const s3Prefix = `s3://bench/restore-${decisions}/`;
  await copyStore(store, await storeFor(parseCatalogueLocation(s3Prefix), { endpoint: s3Endpoint }));
  const pitrS3 = pointRestore("pitr-s3", s3Prefix, "--endpoint", s3Endpoint);
  const full = cli(path.join(dir, "full", ".sdd"), "dr", "restore", "--from", backup);
  const segments = (JSON.parse(pitr.stdout) as { segments: number }).segments;
  if ((JSON.parse(pitrS3.stdout) as { segments: number }).segments !== segments)
    throw new Error(`bench: the restore from S3 applied another number of segments than from the folder`);
  await rm(dir, { recursive: true, force: true });
  const cost = (c: ProcessCost) => ({
    wall_s: round(c.wall_s, 3),
    cpu_s: round(c.cpu_s, 3),
    peak_rss_mb: round(c.peak_rss_mb, 1),
  });
  return {
    decisions_after_snapshot: decisions,
    segments,
    archive_restore: cost(pitr),
    archive_restore_s3: cost(pitrS3),
    full_restore: cost(full),
  };
}

/** The RPO rows of both sites, at 100 and 1,000 decisions/s, with the interval and with `--sync`. */
async function rpoSection(root: string, sites: Site[], goals: Goal[]) {
  const rpo: Record<string, unknown>[] = [];
  const rtt: Record<string, number> = {};
  for (const site of sites) {
    rtt[site.name] = round(await roundTripMs(await site.open("rtt")), 2);
    for (const rate of [100, 1000])
      for (const sync of [false, true]) {
        const r = await rpoRun(root, site, rate, sync);
        log(`rpo ${r.label}: p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`);
        rpo.push({ ...r, store_round_trip_ms: rtt[site.name] });
        goals.push(
          sync
            ? absoluteGoal(
                `archive.rpo_sync_p99_over_rtt.${site.name}.${rate}`,
                "ms",
                r.p99_ms - rtt[site.name]!,
                { max: 50 },
              )
            : absoluteGoal(`archive.rpo_p99.${site.name}.${rate}`, "ms", r.p99_ms, { max: 1000 }),
        );
      }
  }
  return { store_round_trip_ms: rtt, rpo };
}

/** Rounds of the overhead runs (each: every store in process and in its own process, each run beside the writer alone). */
const OVERHEAD_ROUNDS = options.rounds;
/** The timed window of each overhead run: seconds of appends, after the warm-up. */
const OVERHEAD_SECONDS = options["overhead-seconds"];
const OVERHEAD_FORMS = ["in_process", "own_process"] as const;
/** Leaves out the diagnostic row of a folder on tmpfs (a shorter run). */
const NO_TMPFS_ROW = options["no-tmpfs-row"];
/** Stores whose rows only explain the others: no goal (bench/README.md). */
const DIAGNOSTIC_STORES = new Set<OverheadStore["name"]>(["folder_on_tmpfs"]);

/**
 * Each run with an archiver is compared with the writer alone run just before and just after it
 * (their mean): the machine's load moves the writer's rate by more than the goal's 5% from one
 * second to the next, so only runs next to each other are compared. A row's ratio is the median
 * of its runs' ratios; their quartiles say whether that median resolves 5%.
 */
async function overheadSection(root: string, stores: OverheadStore[], goals: Goal[]) {
  const loadBefore = os.loadavg().map((l) => round(l, 2));
  const spec = { cli: CLI, seconds: OVERHEAD_SECONDS, warmup: 5000, intervalMs: 100 };
  const rows = stores.flatMap((store) => OVERHEAD_FORMS.map((form) => ({ store, form })));
  const alone: OverheadRun[] = [];
  const withArchiver = new Map<string, { run: OverheadRun; before: number }[]>();
  for (let i = 0; i < OVERHEAD_ROUNDS; i++)
    for (const { store, form } of rows) {
      alone.push(await overheadRun(spec, root, `alone-${alone.length}`, "alone"));
      const key = `${store.name}.${form}`;
      const run = await overheadRun(spec, root, `${store.name}-${form}-${i}`, form, store);
      withArchiver.set(key, [...(withArchiver.get(key) ?? []), { run, before: alone.length - 1 }]);
    }
  alone.push(await overheadRun(spec, root, `alone-${alone.length}`, "alone"));
  const us = (s: number | undefined, n: number) => (s === undefined ? undefined : (s / n) * 1e6);
  const med = (rs: OverheadRun[], f: (r: OverheadRun) => number | undefined) => {
    const xs = rs.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? round(median(xs), 2) : undefined;
  };
  const sum = (rs: OverheadRun[]) => ({
    appends_per_s: round(median(rs.map((r) => r.appends_per_s)), 0),
    appends: round(median(rs.map((r) => r.appends)), 0),
    writer_process_cpu_us_per_append: med(rs, (r) => us(r.writer_cpu_s, r.appends)),
    writer_thread_cpu_us_per_append: med(rs, (r) => us(r.writer_thread_cpu_s, r.appends)),
    writer_thread_runqueue_us_per_append: med(rs, (r) => us(r.writer_thread_runqueue_s, r.appends)),
    writer_thread_blocked_us_per_append: med(rs, (r) => us(r.writer_thread_blocked_s, r.appends)),
    archiver_process_cpu_us_per_entry: med(rs, (r) => us(r.archiver_cpu_s, r.appends)),
    store_process_cpu_us_per_entry: med(rs, (r) => us(r.store_cpu_s, r.appends)),
    steady_after_s: med(rs, (r) => r.steady_after_s),
    archiver_written_per_wal_byte: med(rs, (r) => r.archiver_written_per_wal_byte),
    rounds_appends_per_s: rs.map((r) => round(r.appends_per_s, 0)),
  });
  const quartile = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.round(q * (s.length - 1))]!;
  };
  /**
   * Per run, its rate over the mean of the writer alone just before and just after it; and what
   * each append of the writer's thread took more than beside those two: on a CPU, waiting for a
   * core, blocked (its fdatasync), so a row says whether the archiver costs the writer cores or disk.
   */
  const paired = (key: string) => {
    const pairs = withArchiver
      .get(key)!
      .map(({ run, before }) => ({ run, near: [alone[before]!, alone[before + 1]!] }));
    const ratios = pairs.map(
      ({ run, near }) => run.appends_per_s / ((near[0]!.appends_per_s + near[1]!.appends_per_s) / 2),
    );
    const added = (f: (r: OverheadRun) => number) =>
      round(
        median(
          pairs.map(
            ({ run, near }) =>
              us(f(run), run.appends)! -
              (us(f(near[0]!), near[0]!.appends)! + us(f(near[1]!), near[1]!.appends)!) / 2,
          ),
        ),
        2,
      );
    return {
      ratio_median: round(median(ratios), 3),
      ratio_quartiles: [round(quartile(ratios, 0.25), 3), round(quartile(ratios, 0.75), 3)],
      ratios: ratios.map((r) => round(r, 3)),
      writer_thread_us_per_append_added: {
        cpu: added((r) => r.writer_thread_cpu_s),
        runqueue: added((r) => r.writer_thread_runqueue_s),
        blocked: added((r) => r.writer_thread_blocked_s),
      },
    };
  };
  const baselineIs =
    "the same WAL writer without the archiver, run just before and just after each run (their mean); " +
    "the median of the per-run ratios";
  const overhead: Record<string, unknown> = {
    in_flight: 64,
    interval_ms: spec.intervalMs,
    warmup_appends: spec.warmup,
    timed_seconds: spec.seconds,
    rounds: OVERHEAD_ROUNDS,
    load_average_before: loadBefore,
    alone: sum(alone),
  };
  for (const store of stores) {
    const row = (form: (typeof OVERHEAD_FORMS)[number]) => {
      const key = `${store.name}.${form}`;
      return { ...sum(withArchiver.get(key)!.map((w) => w.run)), paired: paired(key) };
    };
    overhead[store.name] = {
      ...(DIAGNOSTIC_STORES.has(store.name)
        ? {
            diagnostic:
              "a folder on another device than the WAL's (tmpfs): the archiver's cost without the store's disk",
          }
        : {}),
      archiver_in_process: row("in_process"),
      archiver_own_process: row("own_process"),
    };
    if (DIAGNOSTIC_STORES.has(store.name)) continue;
    for (const [form, name] of [
      ["in_process", `archive.wal_throughput_with_archiver.${store.name}`],
      ["own_process", `archive.wal_throughput_beside_dr_archive.${store.name}`],
    ] as const)
      goals.push(
        ratioGoal(name, "appends_per_s ratio", paired(`${store.name}.${form}`).ratio_median, 1, baselineIs, {
          min: 0.95,
        }),
      );
  }
  overhead.load_average = os.loadavg().map((l) => round(l, 2));
  log(`overhead: ${JSON.stringify(overhead)}`);
  return overhead;
}

/** Objects and bytes per day at 1 decision/s: the segments of a measured run at 1/s, scaled to a day. */
async function objectsSection(root: string, folder: Site) {
  const slowSeconds = Math.max(SECONDS, 10);
  const slow = await rpoRun(root, folder, 1, false, slowSeconds);
  const perDay = {
    measured_seconds: slowSeconds,
    segments_per_cycle: round(slow.segments / Math.max(1, slow.cycles), 2),
    objects_per_day: Math.round((slow.segments / slowSeconds) * 86_400),
    bytes_per_day: Math.round((slow.storedBytes / slowSeconds) * 86_400),
    // The WAL's own bytes: what the segments hold before compression.
    plain_bytes_per_day: Math.round((slow.bytes / slowSeconds) * 86_400),
    note: "WAL stream only; an orchestrator's audit log, ledger and run records add a segment each per cycle in which they change",
    // A WAL and a run record, one decision and one cycle a second, then `dr archive-compact` at its default 8 MiB.
    after_compaction: await archiveObjectsPerDay(COMPACTION_SECONDS, 8 * 1024 * 1024).then((c) => ({
      streams: c.streams,
      objects_per_day_before: c.before_per_day.objects,
      objects_per_day: c.after_per_day.objects,
      bytes_per_day_before: c.before_per_day.bytes,
      bytes_per_day: c.after_per_day.bytes,
      simulated_seconds: c.simulated_seconds,
    })),
  };
  log(`per day at 1 decision/s: ${JSON.stringify(perDay)}`);
  return perDay;
}

type RestoreRow = Awaited<ReturnType<typeof restoreRun>>;

async function restoreSection(root: string, goals: Goal[], s3Endpoint: string) {
  const rows: RestoreRow[] = [];
  for (const n of RESTORE_DECISIONS) {
    const row = await restoreRun(root, n, s3Endpoint);
    log(`restore: ${JSON.stringify(row)}`);
    rows.push(row);
    goals.push(
      ratioGoal(
        `archive.restore_peak_rss.${n}`,
        "peak_rss_mb",
        row.archive_restore.peak_rss_mb,
        row.full_restore.peak_rss_mb,
        "dr restore of a backup of the same state, same run",
        { max: 1.5 },
      ),
    );
  }
  // Flat in the number of segments: the largest row's RSS against the smallest's, from each store.
  if (rows.length > 1)
    for (const [suffix, of] of [
      ["", (r: RestoreRow) => r.archive_restore],
      [".s3", (r: RestoreRow) => r.archive_restore_s3],
    ] as const)
      goals.push(
        ratioGoal(
          `archive.restore_peak_rss_growth${suffix}`,
          "peak_rss_mb",
          of(rows[rows.length - 1]!).peak_rss_mb,
          of(rows[0]!).peak_rss_mb,
          `the same restore ${rows[0]!.decisions_after_snapshot} decisions after its snapshot, same run`,
          { max: 1.1 },
        ),
      );
  return { load_average: os.loadavg().map((l) => round(l, 2)), rows };
}

/** The overhead runs' stores: S3 (s3rver, its CPU measured) and a folder; each run under its own prefix. */
function overheadStores(
  root: string,
  s3: { endpoint: string; child: ChildProcess },
  tmpfsRoot?: string,
): OverheadStore[] {
  const s3Store = (prefix: string) =>
    storeFor(parseCatalogueLocation(`s3://bench/overhead-${prefix}/`), { endpoint: s3.endpoint, retries: 3 });
  const folderStore = (name: "folder" | "folder_on_tmpfs", under: string): OverheadStore => {
    const folder = (prefix: string) => path.join(under, "stores", `overhead-${prefix}`);
    return {
      name,
      open: async (prefix) => {
        await mkdir(folder(prefix), { recursive: true });
        return storeFor(parseCatalogueLocation(folder(prefix)), {});
      },
      cliArgs: (prefix) => ["--to", folder(prefix)],
      location: (prefix) => ({ to: folder(prefix) }),
      clear: (prefix) => rm(folder(prefix), { recursive: true, force: true }),
    };
  };
  return [
    {
      name: "s3",
      open: s3Store,
      cliArgs: (prefix) => ["--to", `s3://bench/overhead-${prefix}/`, "--endpoint", s3.endpoint],
      location: (prefix) => ({ to: `s3://bench/overhead-${prefix}/`, endpoint: s3.endpoint }),
      pid: s3.child.pid,
      clear: async (prefix) => {
        const store = await s3Store(prefix);
        for (const o of await store.list()) await store.delete(o.key);
      },
    },
    folderStore("folder", root),
    ...(tmpfsRoot ? [folderStore("folder_on_tmpfs", tmpfsRoot)] : []),
  ];
}

/**
 * A folder for the overhead section's diagnostic row: on /dev/shm when that is another device
 * than the WAL's (`root`), else none (the row is left out).
 */
async function tmpfsBeside(root: string): Promise<string | undefined> {
  const shm = "/dev/shm";
  const [a, b] = await Promise.all([stat(root), stat(shm).catch(() => undefined)]);
  if (!b?.isDirectory() || a.dev === b.dev || NO_TMPFS_ROW) return undefined;
  return mkdtemp(path.join(shm, "bernstein-bench-archive-"));
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-archive-"));
  Object.assign(process.env, S3_ENV);
  const s3 = await startS3();
  let tmpfs: string | undefined;
  try {
    const sites: Site[] = [
      {
        name: "folder",
        open: async (prefix) => {
          const dir = path.join(root, "stores", prefix);
          await mkdir(dir, { recursive: true });
          return storeFor(parseCatalogueLocation(dir), {});
        },
      },
      {
        name: "s3",
        open: (prefix) =>
          storeFor(parseCatalogueLocation(`s3://bench/${prefix}/`), { endpoint: s3.endpoint, retries: 3 }),
      },
    ];
    const goals: Goal[] = [];
    const doc: Record<string, unknown> = { bench: "archive" };
    if (SECTIONS.has("rpo")) Object.assign(doc, await rpoSection(root, sites, goals));
    if (SECTIONS.has("overhead")) {
      tmpfs = await tmpfsBeside(root);
      doc.overhead = await overheadSection(root, overheadStores(root, s3, tmpfs), goals);
    }
    if (SECTIONS.has("objects")) doc.per_day_at_1_decision_per_s = await objectsSection(root, sites[0]!);
    if (SECTIONS.has("restore")) doc.restore = await restoreSection(root, goals, s3.endpoint);
    process.stdout.write(JSON.stringify({ ...doc, goals }) + "\n");
  } finally {
    s3.child.kill("SIGTERM");
    await rm(root, { recursive: true, force: true });
    if (tmpfs) await rm(tmpfs, { recursive: true, force: true });
  }
}

await main();
