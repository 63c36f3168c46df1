/**
 * WAL benchmark, every figure against a baseline measured in the same run, alternating, medians:
 *  - appends: sequential and 64 in flight against the floor, raw `write`+`fsync` and
 *    `write`+`fdatasync` loops of lines of the same size on the same disk (nothing with one sync
 *    per append can beat them; only group commit can). The writer syncs with fdatasync, so the
 *    goals take the faster of the two loops. The floors write prebuilt lines: a third loop that
 *    builds each entry before its write+fdatasync (floor_building_entries) shows what building
 *    costs, so the sequential writer's own cost is its ratio to that loop. A fourth loop writes
 *    64 prebuilt lines per write+fdatasync (floor_group64): the most 64 in flight can get from
 *    the disk, so its ratio to the floor bounds the 64-in-flight goal's. The phases of a run
 *    take turns in short slices (SLICES), so the disk's changes of speed fall on all of them. The
 *    Python writer's figure from its notes is printed beside it.
 *  - verify: `verifyWal` of a 400,000-entry WAL in its own process against the Python reference
 *    algorithm (parse, re-canonicalize, sha256, link: bench/support/verify_wal_reference.py) on
 *    the same file; whole-process CPU seconds, wall and peak RSS of each. The chain checks that
 *    also build entries are measured the same way against the same reference: `replay`
 *    (readWalEntries: restore's replay, promote, doctor) and `load_state` (readWalSuffix).
 *
 * `npm run bench:wal -- --json` prints one JSON object; `--help` lists the options (sizes, runs,
 * --verify-only, --appends-only). Each phase measures in a partial run what it does in a full one.
 */
import { closeSync, fdatasyncSync, constants as fsc, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GENESIS_HASH, buildEntryWithLine, type WalRecord } from "../src/wal/entry.js";
import { readWalSuffix } from "../src/checkpoint/wal-position.js";
import { readWalEntries, verifyWal } from "../src/wal/reader.js";
import { WalWriter, epochSeconds } from "../src/wal/writer.js";
import { writeThenDatasyncFd } from "../src/workspace/durable.js";
import { initWorkspace } from "../src/workspace/layout.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";
import {
  SUPPORT_SOURCES,
  absoluteGoal,
  measureProcess,
  median,
  ratioGoal,
  round,
  summarize,
  type ProcessCost,
} from "./support/measure.js";

function parseOptions() {
  return benchOptions({
    invocation: "npm run bench:wal --",
    about:
      "WAL appends against the raw write+fsync floor, and chain verification against the Python reference.",
    options: {
      json: JSON_OUTPUT,
      entries: {
        kind: "number",
        default: 400_000,
        integer: true,
        min: 1,
        help: "entries of the verified WAL",
      },
      seconds: { kind: "number", default: 2, min: 0.1, help: "seconds of each append phase per run" },
      runs: { kind: "number", default: 5, integer: true, min: 1, help: "alternating runs" },
      keep: { kind: "flag", help: "leave the WAL files in the temp folder" },
      "verify-only": { kind: "flag", help: "only the verify figures and goals" },
      "appends-only": { kind: "flag", help: "only the append phases and their goals" },
    },
  });
}

type Args = ReturnType<typeof parseOptions>;

/** The Python writer's figures from its notes (same kind of machine, measured side by side). */
const PYTHON_NOTES = { appends_per_s: 3713, raw_fsync_floor_then_per_s: 3707 };

/** A realistic orchestrator decision: intents and commits of task lifecycles. */
function decision(i: number): WalRecord {
  const task = `T-${String(i >> 1).padStart(6, "0")}`;
  return i % 2 === 0
    ? { decision_type: "task_claimed", inputs: { task_id: task, attempt: 1 }, committed: true }
    : {
        decision_type: "task_completed",
        inputs: { task_id: task, attempt: 1 },
        output: { exit_code: 0, cost_usd: 0.0123, input_tokens: 1200, output_tokens: 340, model: "sonnet" },
        committed: true,
      };
}

interface Rate {
  perSecond: number;
  /** CPU seconds of this process per 1,000 appends. */
  cpuMsPerAppend: number;
  /**
   * Appends per sync: 1 for the floors; for the writer its mean group size. At 64 in flight,
   * groups of ~32 are pipelined halves (one syncs while the other builds), ~64 merged groups.
   */
  appendsPerSync: number;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/**
 * Slices each append phase is cut into; the phases of a run take turns slice by slice, so a
 * change of the disk's speed (another process syncing) falls on all of them alike instead of on
 * whichever phase ran then.
 */
const SLICES = 8;

/** One append phase of a run: runs for a slice at a time, its counts summed over its slices. */
interface Phase {
  runFor(ms: number): Promise<void>;
  /** Closes its file and checks it; the phase's rate over all its slices. */
  finish(): Promise<Rate>;
}

/** Appends, seconds and CPU seconds summed over a phase's slices. */
class Tally {
  appends = 0;
  syncs = 0;
  seconds = 0;
  cpu = 0;
  private cpu0: NodeJS.CpuUsage = process.cpuUsage();
  private start = 0;
  begin(): void {
    this.cpu0 = process.cpuUsage();
    this.start = performance.now();
  }
  end(): void {
    this.seconds += (performance.now() - this.start) / 1000;
    this.cpu += cpuSeconds(this.cpu0);
  }
  rate(): Rate {
    return {
      perSecond: this.appends / this.seconds,
      cpuMsPerAppend: (this.cpu * 1000) / this.appends,
      appendsPerSync: this.appends / this.syncs,
    };
  }
}

/**
 * A seq in the range the writer's phases reach, so that the floors' lines have as many digits
 * as theirs: the floors write the same bytes per append (the same two decisions, a timestamp of
 * now with its sub-second digits), into a file that grows like the WAL.
 */
const FLOOR_SEQ = 1000;

/** Callers of the concurrent phase, and lines per write of the group floor. */
const IN_FLIGHT = 64;

/** The two lines the floors write, built once as the writer builds them. */
function prebuiltLines(): Buffer[] {
  return [0, 1].map((i) =>
    Buffer.from(buildEntryWithLine(decision(i), FLOOR_SEQ + i, GENESIS_HASH, epochSeconds()).line),
  );
}

/** A floor: lines of the writer's size written and synced one by one, file kept open. */
function floorPhase(file: string, sync: (fd: number) => void): Phase {
  const lines = prebuiltLines();
  return syncLoopPhase(file, sync, (i) => lines[i & 1]);
}

/**
 * The fdatasync floor with each line built as the writer builds it (hash chained, canonical
 * JSON, timestamp): what every writer of this format does per append before its write. Not a
 * goal's baseline; it tells the cost of building entries, which the floors leave out, from the
 * writer's own.
 */
function buildingFloorPhase(file: string): Phase {
  let prev = GENESIS_HASH;
  return syncLoopPhase(file, fdatasyncSync, (i) => {
    const { entry, line } = buildEntryWithLine(decision(i), FLOOR_SEQ + i, prev, epochSeconds());
    prev = entry.entry_hash;
    return Buffer.from(line);
  });
}

/**
 * The group floor: IN_FLIGHT prebuilt lines per write+fdatasync, what 64 callers would get from
 * this disk if their entries cost nothing to build and every group held all 64. No writer with 64
 * in flight can carry more per sync, so this bounds the 64-in-flight figure from above.
 */
function groupFloorPhase(file: string): Phase {
  const lines = prebuiltLines();
  const group = Buffer.concat(Array.from({ length: IN_FLIGHT }, (_, i) => lines[i & 1]));
  return syncLoopPhase(file, fdatasyncSync, () => group, IN_FLIGHT);
}

/** Writes `lineOf(i)` (`perWrite` appends) and syncs it, one write at a time, file kept open. */
function syncLoopPhase(
  file: string,
  sync: (fd: number) => void,
  lineOf: (i: number) => Buffer,
  perWrite = 1,
): Phase {
  const fd = openSync(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
  const t = new Tally();
  return {
    runFor(ms) {
      t.begin();
      const deadline = performance.now() + ms;
      while (performance.now() < deadline) {
        writeSync(fd, lineOf(t.appends));
        sync(fd);
        t.appends += perWrite;
        t.syncs++;
      }
      t.end();
      return Promise.resolve();
    },
    finish() {
      closeSync(fd);
      return Promise.resolve(t.rate());
    },
  };
}

/** Entries per group of the overlap probe: a pipelined half of IN_FLIGHT. */
const HALF = IN_FLIGHT / 2;

/** Microseconds summed over the cycles of one kind of the overlap probe. */
class Cycles {
  us = 0;
  count = 0;
  async time(cycle: () => Promise<void> | void): Promise<void> {
    const t0 = performance.now();
    await cycle();
    this.us += (performance.now() - t0) * 1000;
    this.count++;
  }
  get mean(): number {
    return this.us / this.count;
  }
}

interface Overlap {
  build_us: number;
  sync_us: number;
  together_us: number;
  overlap: number;
}

/**
 * Whether this machine runs a sync on the thread pool while the main thread builds entries, which
 * is what pipelined group commit needs: a 64-in-flight writer can only beat merged groups (one
 * sync after 64 entries built) when half of them are built during the other half's sync. Cycles
 * of three kinds take turns: HALF entries built as the writer builds them, HALF prebuilt lines
 * written and fdatasynced on the thread pool (writeThenDatasyncFd, the writer's pipelined call),
 * and both at once. `overlap` is how much of the shorter of the two the third kind hides: 1 when
 * it takes max(build, sync), 0 when build + sync.
 */
function overlapPhase(file: string): Phase & { overlap(): Overlap } {
  const fd = openSync(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
  const lines = prebuiltLines();
  const group = Buffer.concat(Array.from({ length: HALF }, (_, i) => lines[i & 1]));
  const build = new Cycles();
  const sync = new Cycles();
  const together = new Cycles();
  let prev = GENESIS_HASH;
  let seq = FLOOR_SEQ;
  const buildHalf = (): void => {
    for (let i = 0; i < HALF; i++, seq++)
      prev = buildEntryWithLine(decision(seq), seq, prev, epochSeconds()).entry.entry_hash;
  };
  return {
    async runFor(ms) {
      const deadline = performance.now() + ms;
      while (performance.now() < deadline) {
        await build.time(buildHalf);
        await sync.time(() => writeThenDatasyncFd(fd, group));
        await together.time(async () => {
          const synced = writeThenDatasyncFd(fd, group);
          buildHalf();
          await synced;
        });
      }
    },
    finish() {
      closeSync(fd);
      // Not an append rate: the probe's own figures are read through overlap().
      return Promise.resolve({ perSecond: 0, cpuMsPerAppend: 0, appendsPerSync: HALF });
    },
    overlap() {
      const hidden = build.mean + sync.mean - together.mean;
      return {
        build_us: round(build.mean, 1),
        sync_us: round(sync.mean, 1),
        together_us: round(together.mean, 1),
        overlap: round(Math.min(1, Math.max(0, hidden / Math.min(build.mean, sync.mean))), 2),
      };
    },
  };
}

/** `callers` appending in a loop, each awaiting its append, through one WalWriter. */
async function appendPhase(dir: string, runId: string, callers: number): Promise<Phase> {
  const { workspace } = await initWorkspace(path.join(dir, `.sdd-${runId}`));
  const w = await WalWriter.open(workspace, runId);
  const t = new Tally();
  // Called once per group, after its sync.
  w.onDurable(() => t.syncs++);
  return {
    async runFor(ms) {
      t.begin();
      const deadline = performance.now() + ms;
      await Promise.all(
        Array.from({ length: callers }, async () => {
          while (performance.now() < deadline) await w.append(decision(t.appends++));
        }),
      );
      t.end();
    },
    async finish() {
      await w.close();
      const v = await verifyWal(w.file, runId);
      if (!v.ok || v.entries !== t.appends)
        throw new Error(`bench: ${runId} did not verify (${v.entries} of ${t.appends})`);
      return t.rate();
    },
  };
}

/** Writes an n-entry WAL quickly (lines built by the real entry code; one fsync at the end). */
async function makeWal(file: string, n: number): Promise<number> {
  const fh = await open(file, "w");
  let prev = GENESIS_HASH;
  let chunk = "";
  const t0 = 1795744701.123456;
  for (let i = 0; i < n; i++) {
    const { entry, line } = buildEntryWithLine(decision(i), i, prev, t0 + i * 0.000731);
    prev = entry.entry_hash;
    chunk += line;
    if (chunk.length > 1 << 20) {
      await fh.write(chunk);
      chunk = "";
    }
  }
  await fh.write(chunk);
  await fh.sync();
  await fh.close();
  return (await stat(file)).size;
}

interface ChildVerify {
  ok: boolean;
  entries: number;
  bytes: number;
  workers: number;
}

/** `verifyWal` in its own process: whole-process CPU, wall and peak RSS are the verifier's. */
function verifyInChild(file: string): ProcessCost & { result: ChildVerify } {
  const cost = measureProcess([process.execPath, fileURLToPath(import.meta.url), "--verify-child", file]);
  return { ...cost, result: JSON.parse(cost.stdout) as ChildVerify };
}

/** The chain checks that also build entries, each in its own process like verifyInChild. */
const ENTRY_READERS = {
  // readWalEntries: what restore's replay, promote, doctor and materialize read a WAL with.
  replay: (file: string) => readWalEntries(file, { runId: "run-bench" }),
  // readWalSuffix: what loadState (status, start, doctor, checkpoint, promote) reads with.
  load_state: (file: string) => readWalSuffix(file, { offset: 0, prevHash: GENESIS_HASH, nextSeq: 0 }),
};
type EntryReader = keyof typeof ENTRY_READERS;

function readInChild(reader: EntryReader, file: string): ProcessCost & { entries: number } {
  const cost = measureProcess([
    process.execPath,
    fileURLToPath(import.meta.url),
    "--read-child",
    reader,
    file,
  ]);
  return { ...cost, entries: (JSON.parse(cost.stdout) as { entries: number }).entries };
}

async function readChild(reader: EntryReader, file: string): Promise<void> {
  let entries = 0;
  for await (const _ of ENTRY_READERS[reader](file)) entries++;
  process.stdout.write(JSON.stringify({ entries }) + "\n");
}

async function verifyChild(file: string): Promise<void> {
  const r = await verifyWal(file, "run-bench");
  const result: ChildVerify = { ok: r.ok, entries: r.entries, bytes: r.bytes, workers: r.workers };
  process.stdout.write(JSON.stringify(result) + "\n");
}

async function appendPhases(dir: string, args: Args, log: (s: string) => void) {
  const floor: Rate[] = [];
  const floorData: Rate[] = [];
  const floorBuilding: Rate[] = [];
  const floorGroup: Rate[] = [];
  const seq: Rate[] = [];
  const c64: Rate[] = [];
  const overlaps: Overlap[] = [];
  for (let i = 0; i < args.runs; i++) {
    log(
      `appends, run ${i + 1}/${args.runs}: floors, sequential, 64 in flight ` +
        `(${args.seconds}s each, in ${SLICES} slices taking turns) ...`,
    );
    const probe = overlapPhase(path.join(dir, `overlap${i}.jsonl`));
    const phases = [
      floorPhase(path.join(dir, `floor${i}.jsonl`), fsyncSync),
      floorPhase(path.join(dir, `floor-data${i}.jsonl`), fdatasyncSync),
      buildingFloorPhase(path.join(dir, `floor-building${i}.jsonl`)),
      groupFloorPhase(path.join(dir, `floor-group${i}.jsonl`)),
      await appendPhase(dir, `run-seq${i}`, 1),
      await appendPhase(dir, `run-c64${i}`, IN_FLIGHT),
      probe,
    ];
    const sliceMs = (args.seconds * 1000) / SLICES;
    for (let slice = 0; slice < SLICES; slice++) {
      // Each slice starts with another phase, so none always runs right after the same one.
      for (let k = 0; k < phases.length; k++) await phases[(slice + k) % phases.length].runFor(sliceMs);
    }
    const [f, fd, fb, fg, sq, cc] = await Promise.all(phases.map((p) => p.finish()));
    floor.push(f);
    floorData.push(fd);
    floorBuilding.push(fb);
    floorGroup.push(fg);
    seq.push(sq);
    c64.push(cc);
    overlaps.push(probe.overlap());
  }
  const med = (rs: Rate[]) => ({
    appends_per_s: Math.round(median(rs.map((r) => r.perSecond))),
    cpu_ms_per_append: round(median(rs.map((r) => r.cpuMsPerAppend)), 4),
    runs_per_s: rs.map((r) => Math.round(r.perSecond)),
    appends_per_sync: round(median(rs.map((r) => r.appendsPerSync)), 1),
  });
  return {
    floor: med(floor),
    floor_fdatasync: med(floorData),
    floor_building_entries: med(floorBuilding),
    floor_group64: med(floorGroup),
    sequential: med(seq),
    concurrent64: med(c64),
    overlap: medianOverlap(overlaps),
  };
}

function medianOverlap(os: Overlap[]): Overlap & { runs: number[] } {
  const m = (k: keyof Overlap) => round(median(os.map((o) => o[k])), k === "overlap" ? 2 : 1);
  return {
    build_us: m("build_us"),
    sync_us: m("sync_us"),
    together_us: m("together_us"),
    overlap: m("overlap"),
    runs: os.map((o) => o.overlap),
  };
}

/** The append figures with their ratios to the floor and to the Python notes, and their goals. */
function appendReport(appends: Awaited<ReturnType<typeof appendPhases>>) {
  const floor = Math.max(appends.floor.appends_per_s, appends.floor_fdatasync.appends_per_s);
  const baseline = "the faster of the raw write+fsync and write+fdatasync loops, same disk, same run";
  const goals = [
    ratioGoal(
      "wal.sequential_appends_vs_floor",
      "appends_per_s",
      appends.sequential.appends_per_s,
      floor,
      baseline,
      { min: 0.95 },
    ),
    ratioGoal(
      "wal.concurrent64_appends_vs_floor",
      "appends_per_s",
      appends.concurrent64.appends_per_s,
      floor,
      baseline,
      { min: 30 },
    ),
  ];
  const figures = {
    ...appends,
    floor_used_for_goals_per_s: floor,
    sequential_ratio_to_floor: round(appends.sequential.appends_per_s / floor, 3),
    sequential_ratio_to_floor_building_entries: round(
      appends.sequential.appends_per_s / appends.floor_building_entries.appends_per_s,
      3,
    ),
    concurrent64_ratio_to_floor: round(appends.concurrent64.appends_per_s / floor, 3),
    // The most the 64-in-flight goal's ratio can be on this disk, and how much of it we reach.
    floor_group64_ratio_to_floor: round(appends.floor_group64.appends_per_s / floor, 3),
    concurrent64_ratio_to_floor_group64: round(
      appends.concurrent64.appends_per_s / appends.floor_group64.appends_per_s,
      3,
    ),
    python_notes: PYTHON_NOTES,
    sequential_ratio_to_python_notes: round(appends.sequential.appends_per_s / PYTHON_NOTES.appends_per_s, 3),
    concurrent64_ratio_to_python_notes: round(
      appends.concurrent64.appends_per_s / PYTHON_NOTES.appends_per_s,
      3,
    ),
    // Pipelined halves at the probe's pace: what 64 in flight gets when each half is built while
    // the other syncs, on this machine as it overlaps them.
    pipelined_probe_ratio_to_floor: round((HALF * 1e6) / appends.overlap.together_us / floor, 3),
  };
  const warnings =
    appends.overlap.overlap < 0.5
      ? [
          `a sync on the thread pool and entries built on the main thread overlapped ${appends.overlap.overlap} ` +
            `(${appends.overlap.build_us} µs to build ${HALF} entries, ${appends.overlap.sync_us} µs to sync them, ` +
            `${appends.overlap.together_us} µs both at once): pipelined groups cannot beat merged ones here, ` +
            `so the 64-in-flight ratio is bound by one sync per ${IN_FLIGHT} entries built`,
        ]
      : [];
  return { goals, figures, warnings };
}

async function verifyPhases(walFile: string, args: Args, log: (s: string) => void) {
  const ours: ProcessCost[] = [];
  const reference: ProcessCost[] = [];
  const readers: Record<EntryReader, ProcessCost[]> = { replay: [], load_state: [] };
  for (let i = 0; i < args.runs; i++) {
    log(
      `verify, run ${i + 1}/${args.runs}: ours, the entry readers, then the Python reference algorithm ...`,
    );
    const v = verifyInChild(walFile);
    if (!v.result.ok || v.result.entries !== args.entries)
      throw new Error("bench: the generated WAL did not verify");
    ours.push(v);
    for (const reader of Object.keys(readers) as EntryReader[]) {
      const r = readInChild(reader, walFile);
      if (r.entries !== args.entries) throw new Error(`bench: ${reader} read ${r.entries} entries`);
      readers[reader].push(r);
    }
    const py = measureProcess(["python3", path.join(SUPPORT_SOURCES, "verify_wal_reference.py"), walFile]);
    if (!(JSON.parse(py.stdout) as { ok: boolean }).ok)
      throw new Error("bench: the reference did not verify the WAL");
    reference.push(py);
  }
  return {
    ours: summarize(ours),
    reference: summarize(reference),
    replay: summarize(readers.replay),
    load_state: summarize(readers.load_state),
    workers: JSON.parse(ours[0].stdout).workers as number,
  };
}

/** The verify phases on a freshly written WAL: figures and goals. */
async function verifyReport(dir: string, args: Args, log: (s: string) => void) {
  log(`writing a ${args.entries}-entry WAL ...`);
  const walFile = path.join(dir, "run-bench.wal.jsonl");
  const size = await makeWal(walFile, args.entries);
  const verify = await verifyPhases(walFile, args, log);
  const mb = size / 1e6;
  const goals = [
    ratioGoal(
      "wal.verify_cpu_vs_reference",
      "cpu_s",
      verify.ours.cpu_s,
      verify.reference.cpu_s,
      "Python reference algorithm, same file, same run",
      { max: 0.5 },
    ),
    absoluteGoal("wal.verify_mb_per_s_wall", "mb_per_s", mb / verify.ours.wall_s, { min: 100 }),
    absoluteGoal("wal.verify_peak_rss_mb", "mb", verify.ours.peak_rss_mb, { max: 100 }),
    ...(["replay", "load_state"] as const).flatMap((reader) => [
      ratioGoal(
        `wal.${reader}_cpu_vs_reference`,
        "cpu_s",
        verify[reader].cpu_s,
        verify.reference.cpu_s,
        "Python reference algorithm, same file, same run",
        { max: 0.5 },
      ),
      absoluteGoal(`wal.${reader}_mb_per_s_wall`, "mb_per_s", mb / verify[reader].wall_s, { min: 100 }),
      absoluteGoal(`wal.${reader}_peak_rss_mb`, "mb", verify[reader].peak_rss_mb, { max: 100 }),
    ]),
  ];
  const figures = {
    entries: args.entries,
    mb: round(mb, 1),
    workers: verify.workers,
    ours: verify.ours,
    python_reference: verify.reference,
    cpu_ratio: round(verify.ours.cpu_s / verify.reference.cpu_s, 3),
    wall_ratio: round(verify.ours.wall_s / verify.reference.wall_s, 3),
    mb_per_s_wall: round(mb / verify.ours.wall_s, 1),
    mb_per_cpu_s: round(mb / verify.ours.cpu_s, 1),
    reference_mb_per_cpu_s: round(mb / verify.reference.cpu_s, 1),
    replay: verify.replay,
    replay_cpu_ratio: round(verify.replay.cpu_s / verify.reference.cpu_s, 3),
    load_state: verify.load_state,
    load_state_cpu_ratio: round(verify.load_state.cpu_s / verify.reference.cpu_s, 3),
  };
  return { goals, figures };
}

async function main(): Promise<void> {
  if (process.argv[2] === "--verify-child") return verifyChild(process.argv[3]);
  if (process.argv[2] === "--read-child") return readChild(process.argv[3] as EntryReader, process.argv[4]);
  const args = parseOptions();
  const log = (s: string) => {
    if (!args.json) process.stderr.write(s + "\n");
  };
  const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-wal-"));
  try {
    const appends = args["verify-only"] ? undefined : appendReport(await appendPhases(dir, args, log));
    const verify = args["appends-only"] ? undefined : await verifyReport(dir, args, log);
    const goals = [...(appends?.goals ?? []), ...(verify?.goals ?? [])];
    const result = {
      bench: "wal",
      machine: { cpus: os.availableParallelism(), load_average: os.loadavg().map((l) => round(l, 2)) },
      runs: args.runs,
      appends: appends?.figures,
      verify: verify?.figures,
      peak_rss_mb: round(process.resourceUsage().maxRSS / 1024, 1),
      goals,
      pass: goals.every((g) => g.met),
      warnings: appends?.warnings ?? [],
    };
    if (args.json) process.stdout.write(JSON.stringify(result) + "\n");
    else process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  } finally {
    if (!args.keep) await rm(dir, { recursive: true, force: true });
    else process.stderr.write(`kept ${dir}\n`);
  }
}

await main();
