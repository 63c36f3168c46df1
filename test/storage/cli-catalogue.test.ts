import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { backupName, RECORD_FORMAT, type BackupRecord } from "../../src/storage/catalogue.js";
import { backupOffsite } from "../../src/storage/offsite.js";
import { runCli, scratchDir } from "../helpers.js";
import { bytesProducer } from "./support/fake-producer.js";
import { startS3Harness, type S3Harness } from "./support/s3-harness.js";

const DAY = 86_400_000;
const NEWEST_DAY = Date.UTC(2026, 2, 31);
const BUCKET = "cli-catalogue";

/** Same 60-over-90-days fixture as the retention table test, as real files with records. */
function sixtyTimes(): Date[] {
  const t: number[] = [0, 6, 12, 18].map((h) => NEWEST_DAY + h * 3_600_000);
  for (let d = 1; d <= 26; d++) t.push(NEWEST_DAY - d * DAY + 3 * 3_600_000);
  for (let d = 28; d <= 86; d += 2) t.push(NEWEST_DAY - d * DAY + 3 * 3_600_000);
  return t.map((ms) => new Date(ms));
}
const dayAt = (daysBack: number, hour = 3) =>
  backupName(new Date(NEWEST_DAY - daysBack * DAY + hour * 3_600_000), false);

async function writeBackupFiles(dir: string, when: Date): Promise<void> {
  const name = backupName(when, false);
  const bytes = Buffer.from(`archive ${name}`);
  await writeFile(path.join(dir, name), bytes);
  const record: BackupRecord = {
    format: RECORD_FORMAT,
    name,
    created_at: when.toISOString(),
    size_bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    manifest_sha256: null,
    file_count: 1,
    encrypted: false,
    source_host: "test",
    verified_at: when.toISOString(),
  };
  await writeFile(path.join(dir, `${name}.json`), JSON.stringify(record));
}

describe("dr list / dr prune (CLI, real child processes)", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-cli-catalogue-");
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });

  it("prune of 60 backups over 90 days with --keep-last 3 --keep-daily 7 --keep-weekly 4 keeps exactly the expected set", async () => {
    const dir = path.join(scratch.dir, "sixty");
    await import("node:fs/promises").then((fs) => fs.mkdir(dir));
    for (const t of sixtyTimes()) await writeBackupFiles(dir, t);
    await writeFile(path.join(dir, "README.txt"), "foreign");
    await writeFile(path.join(dir, "bernstein-backup-20200101T000000Z.tar.gz.bak"), "foreign too");
    const args = [
      "--json",
      "dr",
      "prune",
      "--at",
      dir,
      "--keep-last",
      "3",
      "--keep-daily",
      "7",
      "--keep-weekly",
      "4",
    ];
    const dry = await runCli([...args, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(JSON.parse(dry.stdout).kept, 11);
    assert.equal((await readdir(dir)).length, 122, "dry run deletes nothing");
    const res = await runCli(args);
    assert.equal(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout);
    assert.equal(report.deleted, 49);
    assert.deepEqual(report.foreign_ignored.sort(), [
      "README.txt",
      "bernstein-backup-20200101T000000Z.tar.gz.bak",
    ]);
    const expected = [
      dayAt(0, 18),
      dayAt(0, 12),
      dayAt(0, 6),
      ...[1, 2, 3, 4, 5, 6, 9, 16].map((d) => dayAt(d)),
    ];
    const left = (await readdir(dir)).sort();
    assert.deepEqual(
      left,
      [
        ...expected.flatMap((n) => [n, `${n}.json`]),
        "README.txt",
        "bernstein-backup-20200101T000000Z.tar.gz.bak",
      ].sort(),
    );
    const human = await runCli(["dr", "prune", "--at", dir, "--keep-last", "1", "--dry-run"]);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /keep {3}bernstein-backup-20260331T180000Z\.tar\.gz {2}\(last 1\/1\)/);
    assert.match(
      human.stdout,
      /would delete bernstein-backup-20260331T120000Z\.tar\.gz {2}\(matched no keep rule\)/,
    );
    assert.match(human.stdout, /2 foreign file\(s\) left alone/);
  });

  it("list and prune an s3:// location; foreign objects are listed as ignored and survive", async () => {
    Object.assign(process.env, h.env);
    const root = `s3://${BUCKET}/nightly/`;
    for (let d = 0; d < 5; d++) {
      await backupOffsite({
        toDir: root,
        encrypted: d % 2 === 1,
        produce: bytesProducer(Buffer.from(`backup ${d}`), d % 2 === 1),
        now: new Date(Date.UTC(2026, 10, 1 + d)),
        localCopyDir: scratch.dir,
      });
    }
    const { openCatalogue } = await import("../../src/storage/open-store.js");
    const { Readable } = await import("node:stream");
    await (await openCatalogue(root)).put("someone-elses.tar.gz", Readable.from([Buffer.from("x")]));
    const list = await runCli(["--json", "dr", "list", "--at", root], { env: h.env });
    assert.equal(list.code, 0, list.stderr);
    const doc = JSON.parse(list.stdout);
    assert.equal(doc.backups.length, 5);
    assert.equal(doc.backups[0].name, "bernstein-backup-20261105T000000Z.tar.gz");
    assert.equal(doc.backups[1].encrypted, true);
    assert.equal(doc.backups[1].name, "bernstein-backup-20261104T000000Z.tar.gz.enc");
    assert.ok(
      doc.backups.every((b: { verified: boolean; file_count: number }) => b.verified && b.file_count === 3),
    );
    assert.deepEqual(doc.foreign_ignored, ["someone-elses.tar.gz"]);
    const human = await runCli(["dr", "list", "--at", root], { env: h.env });
    assert.match(human.stdout, /5 backup\(s\) at s3:\/\/cli-catalogue\/nightly\//);
    assert.match(human.stdout, /1 foreign file\(s\) ignored/);
    const prune = await runCli(["--json", "dr", "prune", "--at", root, "--keep-last", "2"], { env: h.env });
    assert.equal(prune.code, 0, prune.stderr);
    assert.equal(JSON.parse(prune.stdout).deleted, 3);
    const after = JSON.parse((await runCli(["--json", "dr", "list", "--at", root], { env: h.env })).stdout);
    assert.deepEqual(
      after.backups.map((b: { name: string }) => b.name),
      ["bernstein-backup-20261105T000000Z.tar.gz", "bernstein-backup-20261104T000000Z.tar.gz.enc"],
    );
    assert.deepEqual(after.foreign_ignored, ["someone-elses.tar.gz"]);
  });

  it("bad inputs: missing bucket, wrong credentials, no keep rule, bad numbers, missing folder", async () => {
    const nob = await runCli(["dr", "list", "--at", "s3://no-such-bucket/x/"], { env: h.env });
    assert.equal(nob.code, 7);
    assert.match(
      nob.stderr,
      /^bernstein: list s3:\/\/no-such-bucket\/x\/: bucket does not exist \(NoSuchBucket\)\n$/,
    );
    const creds = await runCli(["dr", "list", "--at", `s3://${BUCKET}/`], {
      env: { ...h.env, AWS_ACCESS_KEY_ID: "WRONG" },
    });
    assert.equal(creds.code, 7);
    assert.match(creds.stderr, /access denied \(InvalidAccessKeyId\): check the AWS credentials/);
    assert.doesNotMatch(creds.stderr, /\n.*at /, "no stack trace");
    const none = await runCli(["dr", "prune", "--at", scratch.dir]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give at least one of --keep-last/);
    const badNum = await runCli(["dr", "prune", "--at", scratch.dir, "--keep-last", "three"]);
    assert.equal(badNum.code, 2);
    assert.equal(
      badNum.stderr,
      "bernstein: --keep-last three: must be an integer >= 0; see 'bernstein dr prune --help'\n",
    );
    const missing = await runCli(["dr", "list", "--at", path.join(scratch.dir, "nope")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such file or folder/);
    const badUrl = await runCli(["dr", "list", "--at", "s3://"]);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /missing bucket name/);
  });
});
