import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import { restoreFromStream } from "../../src/dr/restore.js";
import { openCatalogue, openObject } from "../../src/storage/open-store.js";
import {
  canRunOnTerminal,
  makeBenchWorkspace,
  runCli,
  runCliOnTerminal,
  scratchDir,
  type CliResult,
} from "../helpers.js";
import { restoreEventFile } from "../dr/support/workspace.js";
import { startS3Harness, type FaultRule, type S3Harness } from "./support/s3-harness.js";

const BUCKET = "dr-offsite";
const WRITES = new Set(["PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"]);

/** 503 for the first `times` object writes (the archive upload), everything else passes. */
function failWrites(times: number): FaultRule {
  let seen = 0;
  return (op) => (WRITES.has(op) && ++seen <= times ? 503 : undefined);
}

/** Every regular file under `dir` (relative path → sha256). */
async function tree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string): Promise<void> {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile())
        out.set(
          r,
          createHash("sha256")
            .update(await readFile(path.join(dir, r)))
            .digest("hex"),
        );
    }
  }
  await walk("");
  return out;
}

describe("dr backup/list/restore/verify/prune with s3:// and catalogue locations (CLI, s3rver)", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let sdd: string;
  let env: Record<string, string>;
  const cli = (args: string[], extra: Record<string, string | undefined> = {}): Promise<CliResult> =>
    runCli(["--sdd", sdd, ...args], { env: { ...env, ...extra } });

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-cli-offsite-");
    sdd = makeBenchWorkspace(path.join(scratch.dir, "project"), {
      files: 120,
      keyOut: path.join(scratch.dir, "audit.key"),
    });
    Object.assign(process.env, h.env);
    env = {
      ...h.env,
      BERNSTEIN_AUDIT_KEY_PATH: path.join(scratch.dir, "audit.key"),
      BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "local-copies"),
    };
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });
  beforeEach(() => h.setFault(undefined));

  it("backup --to-dir s3://, list, verify --latest, restore --latest: byte-identical", async () => {
    const root = `s3://${BUCKET}/site/`;
    const b = await cli(["--json", "dr", "backup", "--to-dir", root]);
    assert.equal(b.code, 0, b.stderr);
    const backup = JSON.parse(b.stdout);
    assert.match(backup.path, /^s3:\/\/dr-offsite\/site\/bernstein-backup-\d{8}T\d{6}Z\.tar\.gz$/);
    assert.equal(backup.verified, true);
    assert.deepEqual(await readdir(path.join(scratch.dir, "local-copies")), []);

    const l = await cli(["--json", "dr", "list", "--at", root]);
    assert.equal(l.code, 0, l.stderr);
    const listed = JSON.parse(l.stdout).backups;
    assert.equal(listed.length, 1);
    assert.equal(listed[0].sha256, backup.sha256);
    assert.equal(listed[0].file_count, backup.file_count);
    assert.equal(listed[0].verified, true);

    const v = await cli(["--json", "dr", "verify", "--latest", "--at", root]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.equal(JSON.parse(v.stdout).sha256, backup.sha256);
    // The verify refreshed the record's verified_at, which dr list shows.
    assert.equal(JSON.parse(v.stdout).record_refreshed, true);
    const relisted = JSON.parse((await cli(["--json", "dr", "list", "--at", root])).stdout).backups;
    assert.ok(
      Date.parse(relisted[0].verified_at) > Date.parse(listed[0].verified_at),
      `${relisted[0].verified_at} after ${listed[0].verified_at}`,
    );
    // An object with no record (backup --to s3://bucket/key) verifies without one.
    const plainKey = `s3://${BUCKET}/plain/one.tar.gz`;
    assert.equal((await cli(["dr", "backup", "--to", plainKey])).code, 0);
    const vp = await cli(["--json", "dr", "verify", "--from", plainKey]);
    assert.equal(vp.code, 0, vp.stderr);
    assert.equal(JSON.parse(vp.stdout).record_refreshed, false);

    const dry = await cli(["--json", "dr", "restore", "--dry-run", "--from", backup.path]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(JSON.parse(dry.stdout).file_count, backup.file_count);

    const target = path.join(scratch.dir, "restored", ".sdd");
    const r = await runCli(["--sdd", target, "--json", "dr", "restore", "--latest", "--at", root], { env });
    assert.equal(r.code, 0, r.stderr);
    // Beyond the archive, the restored audit chain holds the restore's own dr.restore event.
    const { rel: appended, carried } = restoreEventFile(target);
    assert.ok((await readFile(path.join(sdd, appended), "utf8").catch(() => "")).startsWith(carried));
    // And the row of the backup it was restored from (its last good backup), which the archive
    // could not hold.
    const rows = (await readFile(path.join(target, "runs", "backups.jsonl"), "utf8")).trim().split("\n");
    assert.equal(JSON.parse(rows.at(-1)!).location, backup.path);
    const restored = await tree(
      target,
      (rel) => rel === "runtime/restored-from.json" || rel === appended || rel === "runs/backups.jsonl",
    );
    const original = await tree(sdd);
    assert.ok(restored.size > 100, `restored ${restored.size} files`);
    for (const [rel, digest] of restored) assert.equal(original.get(rel), digest, rel);
  });

  it("backup --to s3://bucket/key --encrypt, restore --from s3:// --decrypt", async () => {
    const pw = path.join(scratch.dir, "pw");
    await writeFile(pw, "correct horse\n", { mode: 0o600 });
    const b = await cli([
      "--json",
      "dr",
      "backup",
      "--to",
      `s3://${BUCKET}/one/manual.tar.gz`,
      "--encrypt",
      "--password-file",
      pw,
    ]);
    assert.equal(b.code, 0, b.stderr);
    const backup = JSON.parse(b.stdout);
    assert.equal(backup.path, `s3://${BUCKET}/one/manual.tar.gz.enc`);
    const target = path.join(scratch.dir, "restored-enc", ".sdd");
    const r = await runCli(
      [
        "--sdd",
        target,
        "--json",
        "dr",
        "restore",
        "--from",
        backup.path,
        "--decrypt",
        "--password-file",
        pw,
        "--key-file",
        path.join(scratch.dir, "restored-key"),
      ],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).sha256, backup.sha256);
  });

  it("a download cut part-way: exit 7, one line naming the object; the target keeps its state", async () => {
    const key = `s3://${BUCKET}/cut/x.tar.gz`;
    assert.equal((await cli(["dr", "backup", "--to", key])).code, 0);
    const target = path.join(scratch.dir, "cut-target", ".sdd");
    // The target's state before: restored in process (the restore under test is the cut one).
    const object = await openObject(key);
    await restoreFromStream(await object.store.get(object.key), target, {
      auditKeyPath: env.BERNSTEIN_AUDIT_KEY_PATH,
    });
    const before = await tree(target);
    h.setFault((op) => (op === "GetObject" ? "cut" : undefined));
    const r = await runCli(["--sdd", target, "dr", "restore", "--from", key, "--no-keep"], { env });
    h.setFault(undefined);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr.trim(), /^bernstein: download s3:\/\/dr-offsite\/cut\/x\.tar\.gz: [^\n]+$/);
    assert.deepEqual(await tree(target), before);
    assert.deepEqual(await readdir(path.dirname(target)), [".sdd"]);
  });

  it("503 twice then success: the backup succeeds after 2 retries", async () => {
    h.setFault(failWrites(2));
    const b = await cli(["--json", "dr", "backup", "--to-dir", `s3://${BUCKET}/flaky/`]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).verified, true);
    assert.equal((b.stderr.match(/HTTP 503 ServiceUnavailable.*; retry \d/g) ?? []).length, 2, b.stderr);
  });

  it("503 always: exit 7, the local copy is kept and printed, no object and no pending upload", async () => {
    h.setFault(failWrites(Infinity));
    const b = await cli(["dr", "backup", "--to-dir", `s3://${BUCKET}/down/`, "--retries", "2"]);
    h.setFault(undefined);
    assert.equal(b.code, 7, b.stderr);
    const m = /the complete backup is kept at (\S+)$/m.exec(b.stderr);
    assert.ok(m, b.stderr);
    assert.ok((await stat(m[1])).size > 0);
    assert.match(b.stderr, /gave up after 3 attempts/);
    assert.deepEqual(await (await openCatalogue(`s3://${BUCKET}/down/`)).list(), []);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("list --check finds a deleted and a replaced backup from the audit chain; prune keeps the newest", async () => {
    const root = `s3://${BUCKET}/audited/`;
    const names: string[] = [];
    for (let i = 0; i < 3; i++) {
      const b = await cli(["--json", "dr", "backup", "--to-dir", root]);
      assert.equal(b.code, 0, b.stderr);
      names.push(path.basename(JSON.parse(b.stdout).path));
    }
    const ok = await cli(["--json", "dr", "list", "--at", root, "--check"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(
      JSON.parse(ok.stdout).check.map((f: { status: string }) => f.status),
      ["ok", "ok", "ok"],
    );
    const store = await openCatalogue(root);
    await store.delete(names[0]);
    await store.put(names[1], Readable.from([Buffer.from("not the backup")]));
    const bad = await cli(["--json", "dr", "list", "--at", root, "--check"]);
    assert.equal(bad.code, 1);
    assert.deepEqual(
      JSON.parse(bad.stdout).check.map((f: { name: string; status: string }) => [f.name, f.status]),
      [
        [names[0], "missing"],
        [names[1], "replaced"],
        [names[2], "ok"],
      ],
    );
    const quiet = await cli(["--quiet", "dr", "list", "--at", root, "--check"]);
    assert.equal(quiet.code, 1);
    assert.equal(quiet.stdout, "");
    assert.match(quiet.stderr, /^bernstein: dr list --check: 2 backup\(s\) missing or replaced at [^\n]+\n$/);
    const p = await cli(["--json", "dr", "prune", "--at", root, "--keep-last", "1"]);
    assert.equal(p.code, 0, p.stderr);
    const left = JSON.parse((await cli(["--json", "dr", "list", "--at", root])).stdout).backups;
    assert.deepEqual(
      left.map((b: { name: string }) => b.name),
      [names[2]],
    );
  });

  it("--full-read-back and --keep-local, list --check --deep finds rot the metadata hides, local --verify", async () => {
    const root = `s3://${BUCKET}/deep/`;
    const local = path.join(scratch.dir, "kept-copies");
    h.resetCounts();
    const b = await cli([
      "--json",
      "dr",
      "backup",
      "--to-dir",
      root,
      "--full-read-back",
      "--keep-local",
      "--local-copy",
      local,
    ]);
    assert.equal(b.code, 0, b.stderr);
    const backup = JSON.parse(b.stdout);
    assert.equal(backup.verified, true);
    // The full read-back downloaded the object again.
    assert.ok((h.counts.get("GetObject") ?? 0) >= 1, JSON.stringify([...h.counts]));
    // --keep-local keeps the complete local copy, byte-identical to the upload.
    const name = path.basename(backup.path);
    const keptSha = createHash("sha256")
      .update(await readFile(path.join(local, name)))
      .digest("hex");
    assert.equal(keptSha, backup.sha256);

    // Bit rot inside the store: same size, the stored sha256 metadata unchanged.
    const onDisk = path.join(h.dir, BUCKET, "deep", `${name}._S3rver_object`);
    const bytes = await readFile(onDisk);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    await writeFile(onDisk, bytes);
    const shallow = await cli(["--json", "dr", "list", "--at", root, "--check"]);
    assert.equal(shallow.code, 0, "the metadata still says the backup is intact");
    const deep = await cli(["--json", "dr", "list", "--at", root, "--check", "--deep"]);
    assert.equal(deep.code, 1, deep.stdout);
    assert.deepEqual(
      JSON.parse(deep.stdout).check.map((f: { status: string }) => f.status),
      ["replaced"],
    );

    // Local --verify reads the written archive back before reporting success.
    const v = await cli(["--json", "dr", "backup", "--to", path.join(scratch.dir, "v.tar.gz"), "--verify"]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(JSON.parse(v.stdout).verified, true);
  });

  it("schedule: one log line per run, prune after each success, last good backup in dr status", async () => {
    const dir = path.join(scratch.dir, "scheduled");
    const run = await cli([
      "dr",
      "schedule",
      "--every",
      "1s",
      "--to-dir",
      dir,
      "--keep-last",
      "2",
      "--count",
      "3",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split("\n");
    assert.match(lines[0], /schedule: every 1s to /);
    const runs = lines.filter((l) => / run \d+ ok: /.test(l));
    assert.equal(runs.length, 3, run.stdout);
    assert.match(runs[2], /prune kept 2 deleted 1$/);
    const listed = JSON.parse((await cli(["--json", "dr", "list", "--at", dir])).stdout).backups;
    assert.equal(listed.length, 2);
    const status = await cli(["--json", "dr", "status"]);
    const doc = JSON.parse(status.stdout);
    assert.equal(doc.last_backup.location, path.join(dir, listed[0].name));
    assert.ok(doc.last_backup.age_seconds < 600);
    assert.equal(doc.last_backup.verified, true);

    const jsonRun = await cli([
      "--json",
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      `s3://${BUCKET}/sched/`,
      "--once",
    ]);
    assert.equal(jsonRun.code, 0, jsonRun.stderr);
    const row = JSON.parse(jsonRun.stdout.trim());
    assert.equal(row.run, 1);
    assert.equal(row.ok, true);
    assert.match(row.location, /^s3:\/\/dr-offsite\/sched\/bernstein-backup-/);

    h.setFault(failWrites(Infinity));
    const failed = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      `s3://${BUCKET}/sched/`,
      "--once",
      "--retries",
      "1",
    ]);
    h.setFault(undefined);
    assert.equal(failed.code, 7);
    assert.match(failed.stdout, /run 1 FAILED: .*the complete backup is kept at /);
  });

  it("schedule --print-systemd / --print-cron print ready-to-use text and run nothing", async () => {
    const unit = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      `s3://${BUCKET}/p/`,
      "--keep-daily",
      "7",
      "--print-systemd",
    ]);
    assert.equal(unit.code, 0, unit.stderr);
    assert.match(unit.stdout, /^\[Service\]$/m);
    assert.match(unit.stdout, /^\[Timer\]$/m);
    assert.match(
      unit.stdout,
      new RegExp(
        `^ExecStart=\\S+bernstein --sdd ${sdd.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} dr schedule --every 1h --to-dir s3://dr-offsite/p/ --keep-daily 7 --once$`,
        "m",
      ),
    );
    const cron = await cli(["dr", "schedule", "--every", "15m", "--to-dir", "/backups", "--print-cron"]);
    assert.equal(cron.code, 0, cron.stderr);
    assert.match(
      cron.stdout,
      /^\*\/15 \* \* \* \* cd .* dr schedule --every 15m --to-dir \/backups --once >> /m,
    );
    // Relative paths are written absolute: the unit or crontab runs wherever its folder says.
    const relative = await cli([
      "dr",
      "schedule",
      "--every",
      "15m",
      "--to-dir",
      "bk",
      "--metrics-file=m.prom",
      "--print-cron",
    ]);
    assert.equal(relative.code, 0, relative.stderr);
    const cwd = process.cwd();
    assert.ok(
      relative.stdout.includes(
        `--to-dir ${path.join(cwd, "bk")} --metrics-file=${path.join(cwd, "m.prom")} --once`,
      ),
      relative.stdout,
    );
    const pw = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      "/b",
      "--password",
      "x",
      "--print-systemd",
    ]);
    assert.equal(pw.code, 2);
    assert.match(pw.stderr, /would be written into the unit/);
    const bad = await cli(["dr", "schedule", "--every", "soon", "--to-dir", "/b"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--every soon: expected a duration/);
  });

  it("on a terminal the upload has a progress bar, after the archive's", async (t) => {
    if (!canRunOnTerminal()) {
      t.skip("no script(1) to give the CLI a terminal");
      return;
    }
    const r = await runCliOnTerminal(["--sdd", sdd, "dr", "backup", "--to", `s3://${BUCKET}/tty/b.tar.gz`], {
      env,
    });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /archiving \[#+\] 100%/);
    assert.match(r.output, /uploading \[#+\] 100%/);
    assert.match(r.output, /Backup complete!/);
  });

  it("bad inputs: s3:// without key, missing bucket, wrong credentials", async () => {
    const nokey = await cli(["dr", "backup", "--to", `s3://${BUCKET}`]);
    assert.equal(nokey.code, 2);
    assert.match(nokey.stderr, /needs an object key/);
    const nob = await cli(["dr", "backup", "--to-dir", "s3://no-such-bucket/x/"]);
    assert.equal(nob.code, 7);
    assert.match(nob.stderr, /bucket does not exist/);
    const creds = await cli(["dr", "restore", "--latest", "--at", `s3://${BUCKET}/site/`], {
      AWS_ACCESS_KEY_ID: "WRONG",
    });
    assert.equal(creds.code, 7);
    assert.match(creds.stderr, /access denied/);
  });

  it("no AWS credentials at all: exit 2 at once (no retries), saying where they are looked for", async () => {
    const home = path.join(scratch.dir, "home-without-aws");
    await mkdir(home, { recursive: true });
    const noAws: Record<string, string | undefined> = { HOME: home };
    for (const k of Object.keys({ ...process.env, ...env })) if (k.startsWith("AWS_")) noAws[k] = undefined;
    const root = `s3://${BUCKET}/no-credentials/`;
    const local = path.join(scratch.dir, "no-credentials-local");
    const runs = [
      ["--json", "dr", "list", "--at", root],
      ["--json", "dr", "backup", "--to-dir", root, "--local-copy", local],
    ];
    for (const args of runs) {
      h.resetCounts();
      const r = await cli(args, noAws);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /^bernstein: list s3:\/\/dr-offsite\/no-credentials\/\S*: no AWS credentials found \(looked in AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~\/\.aws\/credentials .*\)$/m,
      );
      assert.doesNotMatch(r.stderr, /retr|gave up|\n\s+at /);
      const doc = JSON.parse(r.stdout) as { exit_code: number; problem: string };
      assert.deepEqual([doc.exit_code, doc.problem], [2, "credentials"]);
      assert.deepEqual([...h.counts.keys()], [], "no request was sent, so none was retried");
    }
    assert.deepEqual(await readdir(local).catch(() => []), [], "no local copy was made");
  });

  it("an endpoint that is not an http(s) URL is refused (exit 2) naming where it came from", async () => {
    const at = ["--json", "dr", "list", "--at", `s3://${BUCKET}/site/`];
    const env = await cli(at, { BERNSTEIN_S3_ENDPOINT: "minio:9000" });
    assert.equal(env.code, 2, env.stderr);
    assert.match(env.stderr, /^bernstein: BERNSTEIN_S3_ENDPOINT=minio:9000: not an http\(s\) URL$/m);
    assert.equal(JSON.parse(env.stdout).exit_code, 2);
    const flag = await cli([...at, "--endpoint", "minio:9000"]);
    assert.equal(flag.code, 2, flag.stderr);
    assert.match(flag.stderr, /^bernstein: --endpoint minio:9000: not an http\(s\) URL$/m);
  });

  it("a BERNSTEIN_S3_* number that is not one is refused (exit 2, naming it) before anything is made or uploaded", async () => {
    const root = `s3://${BUCKET}/env-numbers/`;
    const local = path.join(scratch.dir, "env-numbers-local");
    const cases: [Record<string, string>, RegExp][] = [
      [
        { BERNSTEIN_S3_CONCURRENCY: "two" },
        /^bernstein: BERNSTEIN_S3_CONCURRENCY=two: must be an integer >= 1$/m,
      ],
      [{ BERNSTEIN_S3_CONCURRENCY: "0" }, /BERNSTEIN_S3_CONCURRENCY=0: must be an integer >= 1/],
      [{ BERNSTEIN_S3_CONCURRENCY: "1.5" }, /BERNSTEIN_S3_CONCURRENCY=1\.5: must be an integer >= 1/],
      // Part memory is (concurrency + 1) x part size: 100000 would ask for 800 GB and kill the process.
      [
        { BERNSTEIN_S3_CONCURRENCY: "100000" },
        /^bernstein: BERNSTEIN_S3_CONCURRENCY=100000: too large: must be at most 64$/m,
      ],
      [{ BERNSTEIN_S3_BACKOFF_MS: "fast" }, /BERNSTEIN_S3_BACKOFF_MS=fast: must be an integer >= 0/],
    ];
    for (const [extra, message] of cases) {
      h.resetCounts();
      const r = await cli(["--json", "dr", "backup", "--to-dir", root, "--local-copy", local], extra);
      assert.equal(r.code, 2, `${JSON.stringify(extra)}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal(JSON.parse(r.stdout).exit_code, 2);
      assert.deepEqual([...h.counts.keys()], [], "no request reached the store");
      assert.deepEqual(await readdir(local).catch(() => []), [], "no local copy was made");
    }
    const list = await cli(["dr", "list", "--at", root], { BERNSTEIN_S3_CONCURRENCY: "two" });
    assert.equal(list.code, 2, list.stderr);
    assert.match(list.stderr, /BERNSTEIN_S3_CONCURRENCY=two/);
  });
});
