/**
 * WAL benchmark: append throughput against the Python reference's algorithm (open + write +
 * fsync + close per entry) measured in the same run, and verification speed and peak RSS on a
 * 1,000,000-entry WAL (verified in a child process so its peak RSS is the verifier's alone).
 *
 * `npm run bench:wal -- --json` prints one JSON object. Options: --entries N (verify WAL size,
 * default 1,000,000), --seconds S (per append phase, default 3), --keep (leave the files).
 */
import { spawn } from "node:child_process";
import { closeSync, constants as fsc, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GENESIS_HASH, buildEntryWithLine, type WalRecord } from "../src/wal/entry.js";
import { verifyWal } from "../src/wal/reader.js";
import { WalWriter, epochSeconds } from "../src/wal/writer.js";
import { initWorkspace } from "../src/workspace/layout.js";

interface Args {
  entries: number;
  seconds: number;
  json: boolean;
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { entries: 1_000_000, seconds: 3, json: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--json") a.json = true;
    else if (k === "--keep") a.keep = true;
    else if (k === "--entries") a.entries = Number(argv[++i]);
    else if (k === "--seconds") a.seconds = Number(argv[++i]);
  }
  return a;
}

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

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The Python reference's append: build the entry, then open, write, fsync, close the file. */
async function baselineAsync(file: string, seconds: number): Promise<number> {
  let prev = GENESIS_HASH;
  let n = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const { entry, line } = buildEntryWithLine(decision(n), n, prev, epochSeconds());
    prev = entry.entry_hash;
    const fh = await open(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
    await fh.write(line);
    await fh.sync();
    await fh.close();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

/** The same with blocking system calls, exactly as Python issues them. */
function baselineSync(file: string, seconds: number): number {
  let prev = GENESIS_HASH;
  let n = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const { entry, line } = buildEntryWithLine(decision(n), n, prev, epochSeconds());
    prev = entry.entry_hash;
    const fd = openSync(file, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
    writeSync(fd, line);
    fsyncSync(fd);
    closeSync(fd);
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

async function appendThroughput(
  dir: string,
  runId: string,
  callers: number,
  seconds: number,
): Promise<{ perSecond: number; groups: number }> {
  const { workspace } = await initWorkspace(path.join(dir, `.sdd-${runId}`));
  const w = await WalWriter.open(workspace, runId);
  let groups = 0;
  w.onDurable(() => groups++);
  let n = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < deadline) await w.append(decision(n++));
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  await w.close();
  const v = await verifyWal(w.file, runId);
  if (!v.ok || v.entries !== n) throw new Error(`bench: ${runId} did not verify (${v.entries} of ${n})`);
  return { perSecond: n / elapsed, groups };
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
  seconds: number;
  max_rss_mb: number;
  workers: number;
}

/** Verifies in a child process: its maxRSS is the verifier's peak, nothing of the bench's. */
function verifyInChild(file: string, workers?: number): Promise<ChildVerify> {
  const self = fileURLToPath(import.meta.url);
  const args = [self, "--verify-child", file, ...(workers === undefined ? [] : [String(workers)])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`verify child exited ${code}`));
      else resolve(JSON.parse(out) as ChildVerify);
    });
  });
}

async function verifyChild(file: string, workers: string | undefined): Promise<void> {
  const start = performance.now();
  const r = await verifyWal(file, "run-bench", workers === undefined ? {} : { workers: Number(workers) });
  const seconds = (performance.now() - start) / 1000;
  const result: ChildVerify = {
    ok: r.ok,
    entries: r.entries,
    bytes: r.bytes,
    seconds,
    max_rss_mb: process.resourceUsage().maxRSS / 1024,
    workers: r.workers,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

async function main(): Promise<void> {
  if (process.argv[2] === "--verify-child") return verifyChild(process.argv[3], process.argv[4]);
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string) => {
    if (!args.json) process.stderr.write(s + "\n");
  };
  const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-wal-"));
  try {
    const load = os.loadavg()[0];
    log(`baseline (Python algorithm, async calls), ${args.seconds}s ...`);
    const baseline = await baselineAsync(path.join(dir, "baseline.wal.jsonl"), args.seconds);
    log(`baseline (Python algorithm, blocking calls), ${args.seconds}s ...`);
    const baselineBlocking = baselineSync(path.join(dir, "baseline-sync.wal.jsonl"), args.seconds);
    log(`sequential appends, ${args.seconds}s ...`);
    const seq = await appendThroughput(dir, "run-seq", 1, args.seconds);
    log(`64 concurrent appenders, ${args.seconds}s ...`);
    const c64 = await appendThroughput(dir, "run-c64", 64, args.seconds);
    log(`writing a ${args.entries}-entry WAL ...`);
    const walFile = path.join(dir, "run-bench.wal.jsonl");
    const size = await makeWal(walFile, args.entries);
    log(`verifying (${round(size / 1e6)} MB) in a child process ...`);
    const v = await verifyInChild(walFile);
    if (!v.ok || v.entries !== args.entries) throw new Error("bench: the generated WAL did not verify");
    log(`verifying on one thread, for comparison ...`);
    const v1 = await verifyInChild(walFile, 0);
    const verifyMbPerS = v.bytes / 1e6 / v.seconds;
    const result = {
      bench: "wal",
      machine: { cpus: os.availableParallelism(), load_average_1m: round(load, 2) },
      baseline_appends_per_s: Math.round(baseline),
      baseline_blocking_appends_per_s: Math.round(baselineBlocking),
      sequential_appends_per_s: Math.round(seq.perSecond),
      concurrent64_appends_per_s: Math.round(c64.perSecond),
      concurrent64_mean_group_size: round((c64.perSecond * args.seconds) / Math.max(1, c64.groups)),
      sequential_ratio: round(seq.perSecond / baseline, 2),
      concurrent64_ratio: round(c64.perSecond / baseline, 2),
      sequential_ratio_vs_blocking: round(seq.perSecond / baselineBlocking, 2),
      concurrent64_ratio_vs_blocking: round(c64.perSecond / baselineBlocking, 2),
      verify_entries: v.entries,
      verify_mb: round(v.bytes / 1e6),
      verify_mb_per_s: round(verifyMbPerS),
      verify_peak_rss_mb: round(v.max_rss_mb),
      verify_workers: v.workers,
      verify_single_thread_mb_per_s: round(v1.bytes / 1e6 / v1.seconds),
      verify_single_thread_peak_rss_mb: round(v1.max_rss_mb),
      python_reference: { appends_per_s: 3057, verify_mb_per_s: 52 },
      targets: {
        sequential_ratio: 2,
        concurrent64_ratio: 30,
        verify_mb_per_s: 100,
        verify_peak_rss_mb_below: 100,
      },
      met: {
        sequential: seq.perSecond / baseline >= 2,
        concurrent64: c64.perSecond / baseline >= 30,
        verify_speed: verifyMbPerS >= 100,
        verify_rss: v.max_rss_mb < 100,
      },
    };
    if (args.json) process.stdout.write(JSON.stringify(result) + "\n");
    else process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  } finally {
    if (!args.keep) await rm(dir, { recursive: true, force: true });
    else process.stderr.write(`kept ${dir}\n`);
  }
}

await main();
