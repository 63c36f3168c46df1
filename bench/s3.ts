/**
 * bench:s3 — a large backup (default 2 GiB) streamed to a real S3-compatible server
 * (s3rver on 127.0.0.1, in its own process) through S3Store: multipart upload with SHA-256
 * per part, metadata read-back, record. The figure is the uploader's peak RSS (must stay
 * under 150 MB) and throughput; the baseline, measured in the same run, is the same file put
 * into a local folder store (same code path minus the network).
 *
 * With `--cli` it also runs the whole command, `bernstein dr backup --to s3://...`, on a
 * workspace holding a file of that size (archive produced by src/dr, then uploaded), and
 * reports that process's peak RSS too.
 *
 * Usage: npm run bench:s3 -- --json (`--help` lists the options)
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createHash, randomFillSync } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { launcherEnv, launcherFlags } from "../src/workspace/launcher.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const options = benchOptions({
  invocation: "npm run bench:s3 --",
  about: "A large backup streamed to an S3-compatible server on loopback: uploader peak RSS and throughput.",
  options: {
    json: JSON_OUTPUT,
    "size-mb": { kind: "number", default: 2048, integer: true, min: 1, help: "size of the uploaded file" },
    cli: { kind: "flag", help: "also run the whole `bernstein dr backup --to s3://...` command" },
  },
});
const json = options.json;
const sizeMb = options["size-mb"];
const withCli = options.cli;
const repoRoot = path.resolve(here, "..", "..");
const RSS_LIMIT = 150 * 1024 * 1024;

function log(msg: string): void {
  if (!json) process.stderr.write(msg + "\n");
}

async function makeFile(file: string, bytes: number): Promise<string> {
  const fh = await open(file, "w");
  const hash = createHash("sha256");
  const buf = Buffer.alloc(16 * 1024 * 1024);
  for (let written = 0; written < bytes;) {
    const n = Math.min(buf.length, bytes - written);
    randomFillSync(buf, 0, n);
    hash.update(buf.subarray(0, n));
    await fh.write(buf, 0, n);
    written += n;
  }
  await fh.close();
  return hash.digest("hex");
}

function runChild(
  script: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
): Promise<Record<string, number | string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, "support", script), ...argv], {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split("\n").pop() as string))
        : reject(new Error(`${script} exit ${code}`)),
    );
  });
}

const scratch = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-s3-"));
const server = spawn(process.execPath, [path.join(here, "support", "s3-server-child.js"), "bench"], {
  stdio: ["pipe", "pipe", "inherit"],
});
try {
  const first = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: server.stdout! });
    rl.once("line", resolve);
    server.once("exit", (code) => reject(new Error(`s3 server exited ${code}`)));
  });
  const { endpoint } = JSON.parse(first) as { endpoint: string };
  const file = path.join(scratch, "archive.bin");
  const bytes = sizeMb * 1024 * 1024;
  log(`writing ${sizeMb} MiB test archive...`);
  const sha256 = await makeFile(file, bytes);
  const env = {
    ...process.env,
    BERNSTEIN_S3_ENDPOINT: endpoint,
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    AWS_REGION: "us-east-1",
  };
  log("baseline: local folder store...");
  const local = await runChild(
    "s3-upload-child.js",
    ["local", file, path.join(scratch, "local-store"), sha256],
    env,
  );
  await rm(path.join(scratch, "local-store"), { recursive: true, force: true });
  log("S3 multipart upload...");
  const s3 = await runChild("s3-upload-child.js", ["s3", file, "s3://bench/backups/", sha256], env);
  let cli: Record<string, number> | undefined;
  if (withCli && existsSync(path.join(repoRoot, "dist", "src", "dr", "backup.js"))) {
    log("whole command: dr backup --to s3://... of a workspace holding the file...");
    const project = path.join(scratch, "project");
    const made = spawnSync(process.execPath, [
      path.join(repoRoot, "bench", "make-workspace.mjs"),
      project,
      "--files",
      "200",
      "--key-out",
      path.join(scratch, "audit.key"),
    ]);
    if (made.status !== 0) throw new Error(`make-workspace: ${made.stderr}`);
    const { rename } = await import("node:fs/promises");
    await rename(file, path.join(project, ".sdd", "archive", "big.bin"));
    cli = await new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          ...launcherFlags(),
          path.join(here, "support", "cli-rss-child.js"),
          "--sdd",
          path.join(project, ".sdd"),
          "--json",
          "dr",
          "backup",
          "--to",
          "s3://bench/cli/whole.tar.gz",
          "--local-copy",
          path.join(scratch, "local-copy"),
        ],
        {
          env: launcherEnv({ ...env, BERNSTEIN_AUDIT_KEY_PATH: path.join(scratch, "audit.key") }),
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      child.on("close", () => {
        const line = err.split("\n").find((l) => l.startsWith("BENCH_RSS "));
        if (!line) return reject(new Error(`dr backup: ${err}`));
        const r = JSON.parse(line.slice("BENCH_RSS ".length));
        if (r.code !== 0) return reject(new Error(`dr backup exit ${r.code}: ${err}`));
        resolve(r);
      });
    });
  }
  const mbps = (r: Record<string, number | string>) => Number(r.bytes) / 1048576 / Number(r.seconds);
  const result = {
    bench: "s3",
    size_bytes: bytes,
    figure: {
      what: "dr backup upload to S3 (s3rver on 127.0.0.1): multipart, SHA-256 per part, read-back",
      seconds: Number(s3.seconds),
      cpu_seconds: Number(s3.cpu_seconds),
      mib_per_s: mbps(s3),
      peak_rss_mb: Number(s3.peak_rss_bytes) / 1048576,
    },
    baseline: {
      what: "same file put into a local folder store (atomic write, fsync)",
      seconds: Number(local.seconds),
      cpu_seconds: Number(local.cpu_seconds),
      mib_per_s: mbps(local),
      peak_rss_mb: Number(local.peak_rss_bytes) / 1048576,
    },
    ...(cli
      ? {
          whole_command: {
            what: "bernstein dr backup --to s3://... (gzip archive by src/dr to a local copy, then the upload)",
            seconds: cli.seconds,
            peak_rss_mb: cli.peak_rss_bytes / 1048576,
            peak_rss_ok: cli.peak_rss_bytes < RSS_LIMIT,
          },
        }
      : {}),
    ratio_seconds: Number(s3.seconds) / Number(local.seconds),
    ratio_peak_rss: Number(s3.peak_rss_bytes) / Number(local.peak_rss_bytes),
    peak_rss_limit_mb: RSS_LIMIT / 1048576,
    peak_rss_ok: Number(s3.peak_rss_bytes) < RSS_LIMIT,
    note: "shared 2-core machine: timings are noisy",
  };
  process.stdout.write(JSON.stringify(json ? result : result, null, json ? 0 : 2) + "\n");
  if (!result.peak_rss_ok || (cli && cli.peak_rss_bytes >= RSS_LIMIT)) process.exitCode = 1;
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  await rm(scratch, { recursive: true, force: true });
}
