/**
 * `npm run bench:dr -- --json`: DR throughput and memory against GNU tar, measured in the same
 * run on the same workspace (bench/make-workspace.mjs, 8,421 files):
 *  - plain backup wall time vs `tar -czf` of the included folders (target ≤ 1.5×);
 *  - encrypted backup vs the same baseline (target ≤ 2×);
 *  - encrypted restore (hash-checked, fsynced, swapped) vs `tar -xzf` of the plain archive into an
 *    empty folder (target ≤ 2×);
 *  - peak RSS of backup and restore (each its own process) < 100 MB, also for a workspace holding
 *    one 2 GB file (`--big-gb N` to change, 0 to skip);
 *  - backup and restore encrypted to one age X25519 recipient and to one hybrid (ML-KEM-768 +
 *    X25519) recipient, against the plain ones of the same run (target ≤ 1.2×);
 *  - `dr rekey` (header rewrite) of an `.age` archive of `--rekey-gb N` GB (default 1; 0 skips).
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
import { generateIdentityLine } from "../src/dr/age/keys.js";
import { AgeEncryptor } from "../src/dr/age/encrypt.js";
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
const REKEY_GB = opt("--rekey-gb", 1);

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
  const x25519 = await generateIdentityLine(false);
  const hybrid = await generateIdentityLine(true);
  const ageRuns: ChildResult[] = [];
  const pqRuns: ChildResult[] = [];
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
    settle();
    ageRuns.push(runChild("backup", sdd, path.join(out, `age${i}.tar.gz`), `recipient=${x25519.recipient}`));
    settle();
    pqRuns.push(runChild("backup", sdd, path.join(out, `pq${i}.tar.gz`), `recipient=${hybrid.recipient}`));
  }
  const tarXzRuns: ChildResult[] = [];
  const restoreRuns: ChildResult[] = [];
  const plainRestoreRuns: ChildResult[] = [];
  const ageRestoreRuns: ChildResult[] = [];
  const pqRestoreRuns: ChildResult[] = [];
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
    settle();
    plainRestoreRuns.push(
      runChild("restore", path.join(out, "plain0.tar.gz"), path.join(scratch, `p${i}`, ".sdd")),
    );
    settle();
    ageRestoreRuns.push(
      runChild(
        "restore",
        path.join(out, "age0.tar.gz.age"),
        path.join(scratch, `a${i}`, ".sdd"),
        `identity=${x25519.identity}`,
      ),
    );
    settle();
    pqRestoreRuns.push(
      runChild(
        "restore",
        path.join(out, "pq0.tar.gz.age"),
        path.join(scratch, `q${i}`, ".sdd"),
        `identity=${hybrid.identity}`,
      ),
    );
    for (const d of [`r${i}`, `p${i}`, `a${i}`, `q${i}`, `x${i}`])
      rmSync(path.join(scratch, d), { recursive: true, force: true });
  }
  const fastest = (runs: ChildResult[]): ChildResult => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const tarCz = fastest(tarCzRuns);
  const plain = fastest(plainRuns);
  const enc = fastest(encRuns);
  const tarXz = fastest(tarXzRuns);
  const restore = fastest(restoreRuns);
  // Peak RSS is the worst run's, not the fastest's.
  const worstRss = (runs: ChildResult[]): number => Math.max(...runs.map((r) => r.peak_rss_mb));
  const restorePlain = fastest(plainRestoreRuns);
  const ageB = fastest(ageRuns);
  const pqB = fastest(pqRuns);
  const ageR = fastest(ageRestoreRuns);
  const pqR = fastest(pqRestoreRuns);

  let rekey: Record<string, number> | null = null;
  if (REKEY_GB > 0) {
    // An .age file of REKEY_GB GiB (1 MiB of random bytes repeated), then one header rewrite.
    const big = path.join(scratch, "big.tar.gz.age");
    const enc = await AgeEncryptor.create([x25519.recipient]);
    const fd = openSync(big, "w");
    const block = randomBytes(1024 * 1024);
    for (let i = 0; i < REKEY_GB * 1024; i++) for (const p of enc.update(block)) writeSync(fd, p);
    for (const p of enc.final()) writeSync(fd, p);
    closeSync(fd);
    settle();
    const r = runChild("rekey", big, x25519.identity, hybrid.recipient);
    rmSync(big, { force: true });
    rekey = { size_gb: REKEY_GB, rekey_s: round(r.ms / 1000), peak_rss_mb: round(r.peak_rss_mb, 1) };
  }

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
    age: {
      x25519_backup_s: round(ageB.ms / 1000),
      x25519_backup_ratio_to_plain: round(ageB.ms / plain.ms, 2),
      hybrid_backup_s: round(pqB.ms / 1000),
      hybrid_backup_ratio_to_plain: round(pqB.ms / plain.ms, 2),
      x25519_restore_s: round(ageR.ms / 1000),
      x25519_restore_ratio_to_plain: round(ageR.ms / restorePlain.ms, 2),
      hybrid_restore_s: round(pqR.ms / 1000),
      hybrid_restore_ratio_to_plain: round(pqR.ms / restorePlain.ms, 2),
      peak_rss_mb: {
        x25519_backup: round(worstRss(ageRuns), 1),
        hybrid_backup: round(worstRss(pqRuns), 1),
        x25519_restore: round(worstRss(ageRestoreRuns), 1),
        hybrid_restore: round(worstRss(pqRestoreRuns), 1),
      },
      rekey,
    },
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
      age_ratio_to_plain: 1.2,
      rekey_s: 1,
    },
    runs_s: {
      tar_czf: tarCzRuns.map((r) => round(r.ms / 1000)),
      plain_backup: plainRuns.map((r) => round(r.ms / 1000)),
      encrypted_backup: encRuns.map((r) => round(r.ms / 1000)),
      tar_xzf: tarXzRuns.map((r) => round(r.ms / 1000)),
      encrypted_restore: restoreRuns.map((r) => round(r.ms / 1000)),
      plain_restore: plainRestoreRuns.map((r) => round(r.ms / 1000)),
      age_backup: ageRuns.map((r) => round(r.ms / 1000)),
      hybrid_backup: pqRuns.map((r) => round(r.ms / 1000)),
      age_restore: ageRestoreRuns.map((r) => round(r.ms / 1000)),
      hybrid_restore: pqRestoreRuns.map((r) => round(r.ms / 1000)),
    },
    note: "fastest of N alternating runs each, every run after a sync; wall times of our operations exclude Node start-up and module loading (~0.1 s), tar's include its own; peak RSS is the worst run's",
  };
  const rss = [
    ...Object.values(result.peak_rss_mb),
    big?.encrypted_backup_peak_rss_mb ?? 0,
    big?.encrypted_restore_peak_rss_mb ?? 0,
    ...Object.values(result.age.peak_rss_mb),
  ];
  const pass =
    result.plain_backup_ratio <= 1.5 &&
    result.encrypted_backup_ratio <= 2 &&
    result.encrypted_restore_ratio <= 2 &&
    [ageB, pqB].every((r) => r.ms / plain.ms <= 1.2) &&
    [ageR, pqR].every((r) => r.ms / restorePlain.ms <= 1.2) &&
    (rekey === null || rekey.rekey_s < 1) &&
    rss.every((m) => m < 100);
  process.stdout.write(JSON.stringify({ ...result, pass }) + "\n");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
