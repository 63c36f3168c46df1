/**
 * The archiver's steady-state cost on the WAL writer's throughput (bench:archive, section
 * `overhead`): the writer appends with 64 in flight for a few seconds, alone, with the archiver in
 * its process (as `start --archive-to` hosts it: a thread of its own) and with `dr archive` in a process of its own,
 * each against S3 (s3rver in its own process) and a folder, rounds alternating.
 *
 * Each run starts its archiver (generation, base snapshot, first listing), appends a warm-up and
 * waits until the archiver's status says the store holds it; only then is the writer timed, so
 * what is measured is archiving at the writer's pace (cycles every 100 ms, background compaction
 * at its default), not the archiver's start-up. The timed window is seconds long, so one merge or
 * one slow cycle is a part of it, not all of it. The same warm-up is written alone.
 *
 * The writer's thread's time over the window is split as the kernel counts it (schedstat): on a
 * CPU, ready and waiting for a core, and the rest, blocked (its fdatasync): an archiver costs the
 * writer either cores or disk, and the split says which.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { ArchiverThread } from "../../src/archive/archiver-thread.js";
import { readArchiveStatus } from "../../src/archive/health.js";
import type { BackupStore } from "../../src/storage/store.js";
import { WalWriter } from "../../src/wal/writer.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { DEFAULT_COMPACT_TARGET_BYTES } from "../../src/cli/archive-options.js";
import { launcherEnv, launcherFlags } from "../../src/workspace/launcher.js";

export type OverheadForm = "alone" | "in_process" | "own_process";

/** Where a run's archive goes: a store object for the archiver in this process, a location for `dr archive`. */
export interface OverheadStore {
  name: "s3" | "folder" | "folder_on_tmpfs";
  open(prefix: string): Promise<BackupStore>;
  /** `dr archive` arguments that name the same location. */
  cliArgs(prefix: string): string[];
  /** The same location for the archiver in this process (as `start --archive-to` names it). */
  location(prefix: string): { to: string; endpoint?: string };
  /** The store's own process (s3rver), whose CPU is measured beside the archiver's. */
  pid?: number;
  /** Removes what a run stored (outside the timed window). */
  clear(prefix: string): Promise<void>;
}

export interface OverheadRun {
  appends: number;
  wall_s: number;
  appends_per_s: number;
  /** CPU seconds of this process over the timed window (the in-process archiver's thread included). */
  writer_cpu_s: number;
  /** CPU seconds of this process's main thread alone (the WAL writer's event loop). */
  writer_thread_cpu_s: number;
  /**
   * Seconds the writer's thread was ready to run but waited for a core (/proc schedstat): what
   * the archiver's CPU, the store's, and the machine's other work take from it.
   */
  writer_thread_runqueue_s: number;
  /**
   * Seconds the writer's thread was neither running nor waiting for a core: blocked, mostly in
   * its groups' fdatasync (or waiting for one on the thread pool): what the disk takes.
   */
  writer_thread_blocked_s: number;
  /** `dr archive`'s own CPU seconds over the window. */
  archiver_cpu_s?: number;
  /** The store process's CPU seconds over the window (s3rver and its front proxy). */
  store_cpu_s?: number;
  /** From the archiver's start to its status saying the warm-up is stored (not timed). */
  steady_after_s?: number;
  /** Bytes the WAL grew by over the window. */
  wal_bytes: number;
  /**
   * Bytes the archiver wrote over the window (write calls: segments, merges, its status), per WAL
   * byte: `dr archive`'s own; in process, this process's less the WAL's.
   */
  archiver_written_per_wal_byte?: number;
}

export interface OverheadSpec {
  cli: string;
  seconds: number;
  warmup: number;
  intervalMs: number;
}

const IN_FLIGHT = 64;

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout) || 100;

/** CPU seconds (user + system) a live process, or one thread of it, has used so far (Linux /proc). */
export async function processCpuSeconds(pid: number, thread?: number): Promise<number> {
  const stat = await readFile(
    thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`,
    "utf8",
  );
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Bytes a live process has passed to write calls so far (Linux /proc: wchar). */
async function writtenBytes(pid: number): Promise<number> {
  const io = await readFile(`/proc/${pid}/io`, "utf8");
  return Number(/^wchar: (\d+)$/m.exec(io)?.[1] ?? NaN);
}

/** A thread's time on a CPU and waiting on a run queue, in seconds (Linux /proc schedstat). */
async function threadSchedSeconds(pid: number, thread: number): Promise<{ run: number; queued: number }> {
  const [run, queued] = (await readFile(`/proc/${pid}/task/${thread}/schedstat`, "utf8")).split(" ");
  return { run: Number(run) / 1e9, queued: Number(queued) / 1e9 };
}

const ownCpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const decision = (i: number) => ({
  decision_type: "task_claimed",
  inputs: { task_id: `T-${i}`, attempt: 1 },
  committed: true,
});

/** Appends with IN_FLIGHT in flight: `count` entries, or for `seconds`; returns how many. */
async function appendWhile(wal: WalWriter, from: number, until: { count?: number; seconds?: number }) {
  const inFlight = new Set<Promise<unknown>>();
  const end = until.seconds !== undefined ? performance.now() + until.seconds * 1000 : Infinity;
  let i = 0;
  for (; i < (until.count ?? Infinity) && (i % 64 !== 0 || performance.now() < end); i++) {
    const p = wal.append(decision(from + i)).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return i;
}

/**
 * Waits until the archiver's status, written after `since`, shows no WAL entry durable and not
 * stored: the warm-up is in the store and cycles keep pace. A condition on the product's own
 * health (written at least every second while cycles run), not a sleep.
 */
async function caughtUp(ws: Workspace, since: number, child?: ChildProcess): Promise<void> {
  for (let t0 = Date.now(); ;) {
    const s = await readArchiveStatus(ws.root);
    if (s && s.generation && Date.parse(s.updated_at) > since && s.lag_entries === 0) return;
    if (child && child.exitCode !== null) throw new Error(`dr archive exited ${child.exitCode}`);
    if (Date.now() - t0 > 120_000)
      throw new Error(`archiver not caught up after 120 s: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function startDrArchive(
  spec: OverheadSpec,
  ws: Workspace,
  store: OverheadStore,
  prefix: string,
): ChildProcess {
  return spawn(
    process.execPath,
    [
      ...launcherFlags(),
      spec.cli,
      "--sdd",
      ws.root,
      "dr",
      "archive",
      ...store.cliArgs(prefix),
      "--interval",
      `${spec.intervalMs}ms`,
      "--plain",
      "--i-know-it-is-plain",
      "--json",
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: launcherEnv() },
  );
}

/** One run of one form: start the archiver, warm up until it is caught up, then time the writer. */
export async function overheadRun(
  spec: OverheadSpec,
  root: string,
  label: string,
  form: OverheadForm,
  store?: OverheadStore,
): Promise<OverheadRun> {
  const { workspace: ws } = await initWorkspace(path.join(root, label, ".sdd"));
  const started = Date.now();
  let archiver: ArchiverThread | undefined;
  let child: ChildProcess | undefined;
  if (form === "in_process") {
    await store!.open(label); // a folder store is made by the command in front of the archiver
    const { to, endpoint } = store!.location(label);
    archiver = new ArchiverThread({
      sddDir: ws.root,
      to,
      s3: { endpoint, retries: 3 },
      intervalMs: spec.intervalMs,
      snapshotIntervalMs: 86_400_000,
      compactTargetBytes: DEFAULT_COMPACT_TARGET_BYTES,
    });
    await archiver.started();
    await archiver.step();
    archiver.start((err) => process.stderr.write(`archiver: ${String(err)}\n`));
  } else if (form === "own_process") {
    child = startDrArchive(spec, ws, store!, label);
  }
  const wal = await WalWriter.open(ws, "run-bench");
  await appendWhile(wal, 0, { count: spec.warmup });
  if (form !== "alone") await caughtUp(ws, Date.now(), child);
  const steadyAfter = (Date.now() - started) / 1000;

  const storePid = form === "alone" ? undefined : store?.pid;
  const writerPid = child?.pid ?? process.pid;
  const walSize = async () => (await stat(ws.walFile("run-bench"))).size;
  const [s0, a0, w0, l0] = await Promise.all([
    storePid ? processCpuSeconds(storePid) : 0,
    child ? processCpuSeconds(child.pid!) : 0,
    writtenBytes(writerPid),
    walSize(),
  ]);
  const c0 = ownCpuSeconds();
  const m0 = await processCpuSeconds(process.pid, process.pid);
  const q0 = await threadSchedSeconds(process.pid, process.pid);
  const t0 = performance.now();
  const appends = await appendWhile(wal, spec.warmup, { seconds: spec.seconds });
  const wall = (performance.now() - t0) / 1000;
  const writerCpu = ownCpuSeconds() - c0;
  const writerThreadCpu = (await processCpuSeconds(process.pid, process.pid)) - m0;
  const q1 = await threadSchedSeconds(process.pid, process.pid);
  const [s1, a1, w1, l1] = await Promise.all([
    storePid ? processCpuSeconds(storePid) : 0,
    child ? processCpuSeconds(child.pid!) : 0,
    writtenBytes(writerPid),
    walSize(),
  ]);
  const walBytes = l1 - l0;
  const archiverWrote = child ? w1 - w0 : w1 - w0 - walBytes;

  await wal.close();
  await archiver?.finish();
  if (child) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  if (store && form !== "alone") await store.clear(label);
  await rm(path.join(root, label), { recursive: true, force: true });
  return {
    appends,
    wall_s: wall,
    appends_per_s: appends / wall,
    writer_cpu_s: writerCpu,
    writer_thread_cpu_s: writerThreadCpu,
    writer_thread_runqueue_s: q1.queued - q0.queued,
    writer_thread_blocked_s: Math.max(0, wall - (q1.run - q0.run) - (q1.queued - q0.queued)),
    ...(child ? { archiver_cpu_s: a1 - a0 } : {}),
    ...(storePid ? { store_cpu_s: s1 - s0 } : {}),
    wal_bytes: walBytes,
    ...(form === "alone"
      ? {}
      : { steady_after_s: steadyAfter, archiver_written_per_wal_byte: archiverWrote / walBytes }),
  };
}
