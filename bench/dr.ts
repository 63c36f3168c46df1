/**
 * `npm run bench:dr -- --json`: DR throughput and memory against GNU tar, measured in the same
 * run on the same workspace (bench/make-workspace.mjs, 8,421 files):
 *  - plain backup wall time vs `tar -czf` of the included folders (target ≤ 1.5×);
 *  - encrypted backup vs the same baseline (target ≤ 2×);
 *  - encrypted restore (hash-checked, fsynced, swapped) vs `tar -xzf` of the plain archive into an
 *    empty folder (target ≤ 2×);
 *  - peak RSS of backup and restore (each its own process) < 100 MB, also for a workspace holding
 *    one 2 GB file (`--big-gb N` to change, 0 to skip).
 * Prints ONE JSON object. Options: --json (accepted; the output is always JSON), --files N,
 * --runs N (fastest of N for the timed runs, default 5).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { INCLUDED_DIRS } from "../src/dr/walk.js";
import { launcherFlags } from "./support/launcher.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const child = path.join(here, "support", "dr-child.js");
const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const FILES = opt("--files", 8421);
const RUNS = opt("--runs", 5);
const BIG_GB = opt("--big-gb", 2);
const PASSWORD = "bench password";

interface ChildResult {
  ms: number;
  files: number;
  peak_rss_mb: number;
}

function runChild(...argv: string[]): ChildResult {
  const r = spawnSync(process.execPath, [...launcherFlags(), child, ...argv], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`dr-child ${argv[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as ChildResult;
}

function wall(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

const scratch = mkdtempSync(path.join(os.tmpdir(), "bernstein-bench-dr-"));
try {
  execFileSync(
    process.execPath,
    [path.join(repo, "bench", "make-workspace.mjs"), path.join(scratch, "w"), "--files", String(FILES)],
    {
      stdio: "ignore",
    },
  );
  const sdd = path.join(scratch, "w", ".sdd");
  const dirs = INCLUDED_DIRS.filter((d) => existsSync(path.join(sdd, d)));
  const out = path.join(scratch, "out");
  mkdirSync(out);

  // Each timed operation starts from a clean page cache (`sync` first, not timed): a restore's
  // final syncfs would otherwise also write back whatever the previous step left dirty. The
  // baseline and our operation alternate, so both see the same phases of a shared machine.
  const settle = (): void => void execFileSync("sync");
  const tarCzRuns: ChildResult[] = [];
  const plainRuns: ChildResult[] = [];
  const encRuns: ChildResult[] = [];
  for (let i = 0; i < RUNS; i++) {
    settle();
    tarCzRuns.push({
      ms: wall(() => execFileSync("tar", ["-czf", path.join(out, `tar${i}.tar.gz`), "-C", sdd, ...dirs])),
      files: 0,
      peak_rss_mb: 0,
    });
    settle();
    plainRuns.push(runChild("backup", sdd, path.join(out, `plain${i}.tar.gz`)));
    settle();
    encRuns.push(runChild("backup", sdd, path.join(out, `enc${i}.tar.gz`), PASSWORD));
  }
  const tarXzRuns: ChildResult[] = [];
  const restoreRuns: ChildResult[] = [];
  for (let i = 0; i < RUNS; i++) {
    const into = path.join(scratch, `x${i}`);
    mkdirSync(into);
    settle();
    tarXzRuns.push({
      ms: wall(() => execFileSync("tar", ["-xzf", path.join(out, "plain0.tar.gz"), "-C", into])),
      files: 0,
      peak_rss_mb: 0,
    });
    settle();
    restoreRuns.push(
      runChild("restore", path.join(out, "enc0.tar.gz.enc"), path.join(scratch, `r${i}`, ".sdd"), PASSWORD),
    );
  }
  const fastest = (runs: ChildResult[]): ChildResult => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const tarCz = fastest(tarCzRuns);
  const plain = fastest(plainRuns);
  const enc = fastest(encRuns);
  const tarXz = fastest(tarXzRuns);
  const restore = fastest(restoreRuns);
  // Peak RSS is the worst run's, not the fastest's.
  const worstRss = (runs: ChildResult[]): number => Math.max(...runs.map((r) => r.peak_rss_mb));
  settle();
  const restorePlain = runChild("restore", path.join(out, "plain0.tar.gz"), path.join(scratch, "rp", ".sdd"));
  rmSync(path.join(scratch, "x0"), { recursive: true, force: true });

  let big: Record<string, number> | null = null;
  if (BIG_GB > 0) {
    // One file of BIG_GB GiB: 1 MiB of random bytes repeated (deflate's 32 KiB window cannot
    // exploit the repetition, so this is as costly as random data).
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    const bigFile = path.join(sdd, "caching", "big.bin");
    const block = randomBytes(1024 * 1024);
    const fd = openSync(bigFile, "w");
    for (let i = 0; i < BIG_GB * 1024; i++) writeSync(fd, block);
    closeSync(fd);
    const b = runChild("backup", sdd, path.join(out, "big.tar.gz"), PASSWORD);
    rmSync(bigFile);
    const r = runChild(
      "restore",
      path.join(out, "big.tar.gz.enc"),
      path.join(scratch, "rbig", ".sdd"),
      PASSWORD,
    );
    big = {
      size_gb: BIG_GB,
      encrypted_backup_s: round(b.ms / 1000),
      encrypted_backup_peak_rss_mb: round(b.peak_rss_mb, 1),
      encrypted_restore_s: round(r.ms / 1000),
      encrypted_restore_peak_rss_mb: round(r.peak_rss_mb, 1),
    };
  }

  const result = {
    bench: "dr",
    workspace_files: FILES,
    archive_files: plain.files,
    runs: RUNS,
    baseline_tar_czf_s: round(tarCz.ms / 1000),
    plain_backup_s: round(plain.ms / 1000),
    plain_backup_ratio: round(plain.ms / tarCz.ms, 2),
    encrypted_backup_s: round(enc.ms / 1000),
    encrypted_backup_ratio: round(enc.ms / tarCz.ms, 2),
    baseline_tar_xzf_s: round(tarXz.ms / 1000),
    encrypted_restore_s: round(restore.ms / 1000),
    encrypted_restore_ratio: round(restore.ms / tarXz.ms, 2),
    plain_restore_s: round(restorePlain.ms / 1000),
    peak_rss_mb: {
      plain_backup: round(worstRss(plainRuns), 1),
      encrypted_backup: round(worstRss(encRuns), 1),
      encrypted_restore: round(worstRss(restoreRuns), 1),
    },
    big_file: big,
    targets: {
      plain_backup_ratio: 1.5,
      encrypted_backup_ratio: 2,
      encrypted_restore_ratio: 2,
      peak_rss_mb: 100,
    },
    runs_s: {
      tar_czf: tarCzRuns.map((r) => round(r.ms / 1000)),
      plain_backup: plainRuns.map((r) => round(r.ms / 1000)),
      encrypted_backup: encRuns.map((r) => round(r.ms / 1000)),
      tar_xzf: tarXzRuns.map((r) => round(r.ms / 1000)),
      encrypted_restore: restoreRuns.map((r) => round(r.ms / 1000)),
    },
    note: "fastest of N alternating runs each, every run after a sync; wall times of our operations exclude Node start-up and module loading (~0.1 s), tar's include its own; peak RSS is the worst run's",
  };
  const rss = [
    ...Object.values(result.peak_rss_mb),
    big?.encrypted_backup_peak_rss_mb ?? 0,
    big?.encrypted_restore_peak_rss_mb ?? 0,
  ];
  const pass =
    result.plain_backup_ratio <= 1.5 &&
    result.encrypted_backup_ratio <= 2 &&
    result.encrypted_restore_ratio <= 2 &&
    rss.every((m) => m < 100);
  process.stdout.write(JSON.stringify({ ...result, pass }) + "\n");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
