import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import { ExitCode, UserError } from "../../src/errors/errors.js";
import { backupName, checkCatalogue, listCatalogue, sha256Of } from "../../src/storage/catalogue.js";
import { backupOffsite, openBackupSource } from "../../src/storage/offsite.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { pruneLocation } from "../../src/storage/prune.js";
import { backupsFromAudit } from "../../src/storage/audit-record.js";
import { recordAuditEvent } from "../../src/dr/audit-event.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli } from "../helpers.js";
import { scratchDir } from "../helpers.js";
import { bytesProducer } from "./support/fake-producer.js";
import { failAlways, failFirst, startS3Harness, type S3Harness } from "./support/s3-harness.js";

const BUCKET = "offsite";
let h: S3Harness;
let scratch: { dir: string; cleanup: () => Promise<void> };

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("off-site backups through the storage hook (plain streams)", () => {
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    Object.assign(process.env, h.env);
    scratch = await scratchDir("bernstein-offsite-");
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });
  beforeEach(() => {
    h.setFault(undefined);
    h.resetCounts();
  });

  it("backup to s3://bucket/prefix/, list, restore latest: byte-identical, verified, local copy removed", async () => {
    const bytes = randomBytes(7 * 1024 * 1024);
    const localDir = path.join(scratch.dir, "copies-1");
    const now = new Date(Date.UTC(2026, 10, 27, 3, 0, 0));
    const res = await backupOffsite({
      toDir: `s3://${BUCKET}/site/`,
      encrypted: false,
      produce: bytesProducer(bytes),
      localCopyDir: localDir,
      fullReadBack: true,
      now,
    });
    assert.equal(res.name, backupName(now, false));
    assert.equal(res.location, `s3://${BUCKET}/site/${res.name}`);
    assert.equal(res.record?.sha256, sha(bytes));
    assert.equal(res.local_copy, null);
    assert.deepEqual(await readdir(localDir), []);
    const store = await openCatalogue(`s3://${BUCKET}/site`);
    const cat = await listCatalogue(store);
    assert.deepEqual(
      cat.entries.map((e) => [e.name, e.verified, e.size, e.record?.file_count]),
      [[res.name, true, bytes.length, 3]],
    );
    const src = await openBackupSource({ latest: true, at: `s3://${BUCKET}/site/` });
    assert.equal(src.name, res.name);
    assert.equal((await sha256Of(src.stream)).sha256, sha(bytes));
  });

  it("503 twice then success: the backup succeeds after 2 retries", async () => {
    const retries: string[] = [];
    h.setFault(failFirst("PutObject", 2));
    const res = await backupOffsite({
      to: `s3://${BUCKET}/direct/one.tar.gz`,
      encrypted: true,
      produce: bytesProducer(Buffer.from("small archive")),
      localCopyDir: path.join(scratch.dir, "copies-2"),
      onRetry: (r) => retries.push(r.operation),
    });
    h.setFault(undefined);
    assert.equal(res.location, `s3://${BUCKET}/direct/one.tar.gz.enc`);
    assert.equal(res.retries, 2);
    assert.equal(retries.length, 2);
  });

  it("503 always: exit 7, the complete local copy is kept and named, no object, no pending upload", async () => {
    const bytes = randomBytes(11 * 1024 * 1024);
    h.setFault(failAlways("UploadPart"));
    const localDir = path.join(scratch.dir, "copies-3");
    let err: unknown;
    try {
      await backupOffsite({
        toDir: `s3://${BUCKET}/down/`,
        encrypted: false,
        produce: bytesProducer(bytes),
        localCopyDir: localDir,
        s3: { partSize: 5 * 1024 * 1024 },
      });
    } catch (e) {
      err = e;
    }
    h.setFault(undefined);
    assert.ok(err instanceof UserError);
    assert.equal(err.exitCode, ExitCode.REMOTE);
    const kept = err.details?.local_copy as string;
    assert.match(err.message, /the complete backup is kept at /);
    assert.ok(err.message.includes(kept));
    assert.equal(sha(await readFile(kept)), sha(bytes));
    const store = await openCatalogue(`s3://${BUCKET}/down/`);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("a local catalogue folder: written in place with its record; foreign files are listed as foreign and never pruned", async () => {
    const dir = path.join(scratch.dir, "catalogue");
    const times = [0, 1, 2, 3].map((d) => new Date(Date.UTC(2026, 10, 20 + d, 1, 0, 0)));
    for (const now of times) {
      await backupOffsite({ toDir: dir, encrypted: false, produce: bytesProducer(randomBytes(1000)), now });
    }
    await writeFile(path.join(dir, "notes.txt"), "mine, not bernstein's");
    await writeFile(path.join(dir, "bernstein-backup-latest.tar.gz"), "a hand-made copy");
    const store = await openCatalogue(dir);
    const cat = await listCatalogue(store);
    assert.equal(cat.entries.length, 4);
    assert.ok(cat.entries.every((e) => e.verified));
    assert.deepEqual(cat.foreign.sort(), ["bernstein-backup-latest.tar.gz", "notes.txt"]);
    const pruned = await pruneLocation(store, { last: 1 });
    assert.equal(pruned.deleted, 3);
    assert.deepEqual((await readdir(dir)).filter((n) => !n.startsWith(".")).sort(), [
      "bernstein-backup-20261123T010000Z.tar.gz",
      "bernstein-backup-20261123T010000Z.tar.gz.json",
      "bernstein-backup-latest.tar.gz",
      "notes.txt",
    ]);
  });

  it("check: missing, replaced and unrecorded backups are found (S3 metadata and every byte)", async () => {
    const root = `s3://${BUCKET}/check/`;
    const a = new Date(Date.UTC(2026, 0, 1, 0, 0, 0));
    const b = new Date(Date.UTC(2026, 0, 2, 0, 0, 0));
    const ra = await backupOffsite({
      toDir: root,
      encrypted: false,
      produce: bytesProducer(Buffer.from("A")),
      now: a,
      localCopyDir: scratch.dir,
    });
    const rb = await backupOffsite({
      toDir: root,
      encrypted: false,
      produce: bytesProducer(Buffer.from("B")),
      now: b,
      localCopyDir: scratch.dir,
    });
    const store = await openCatalogue(root);
    // Someone replaces b with other bytes of the same size and deletes a; c appears from nowhere.
    await store.put(rb.name, Readable.from([Buffer.from("X")]));
    await store.delete(ra.name);
    const c = backupName(new Date(Date.UTC(2026, 0, 3)), false);
    await store.put(c, Readable.from([Buffer.from("C")]));
    const expected = [ra, rb].map((r) => ({
      name: r.name,
      sha256: r.produced.sha256,
      size_bytes: r.produced.size_bytes,
    }));
    const findings = await checkCatalogue(store, expected, { deep: true });
    assert.deepEqual(
      findings.map((f) => [f.name, f.status]),
      [
        [ra.name, "missing"],
        [rb.name, "replaced"],
        [c, "unrecorded"],
      ],
    );
    // Without --deep the replaced object is caught by its sha256 metadata being gone.
    const shallow = await checkCatalogue(store, expected);
    assert.equal(shallow.find((f) => f.name === rb.name)?.status, "replaced");
  });

  it("the audit chain records each off-site backup; dr list --check compares the location with it", async () => {
    process.env.BERNSTEIN_AUDIT_KEY_PATH = path.join(scratch.dir, "audit.key");
    const { workspace: ws } = await initWorkspace(path.join(scratch.dir, "ws", ".sdd"));
    const root = `s3://${BUCKET}/audited/`;
    const res = await backupOffsite({
      toDir: root,
      encrypted: false,
      produce: bytesProducer(Buffer.from("Z")),
      localCopyDir: scratch.dir,
    });
    const event = await recordAuditEvent(ws, {
      event_type: "dr.backup",
      resource_type: "backup",
      resource_id: res.location,
      details: {
        sha256: res.produced.sha256,
        size_bytes: res.produced.size_bytes,
        root: res.root,
        name: res.name,
      },
    });
    assert.equal(event.recorded, true, event.warning);
    assert.deepEqual(await backupsFromAudit(ws, res.root), [
      {
        name: res.name,
        sha256: sha(Buffer.from("Z")),
        size_bytes: 1,
        written_at: (await backupsFromAudit(ws, res.root))[0].written_at,
      },
    ]);
    const env = { ...h.env, BERNSTEIN_AUDIT_KEY_PATH: process.env.BERNSTEIN_AUDIT_KEY_PATH };
    const ok = await runCli(["--sdd", ws.root, "--json", "dr", "list", "--at", root, "--check"], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).check[0].status, "ok");
    await (await openCatalogue(root)).delete(res.name);
    const gone = await runCli(["--sdd", ws.root, "dr", "list", "--at", root, "--check"], { env });
    assert.equal(gone.code, 1);
    assert.match(gone.stdout, /missing +bernstein-backup-/);
    assert.match(gone.stdout, /check FAILED: 1 backup\(s\) missing or replaced/);
  });

  it("a record that cannot be written: the archive is removed again, and --latest keeps the older verified backup", async () => {
    const root = `s3://${BUCKET}/norecord/`;
    const at = (h: number) => new Date(Date.UTC(2026, 6, 1, h));
    const req = (now: Date, bytes: string) => ({
      toDir: root,
      encrypted: false,
      produce: bytesProducer(Buffer.from(bytes)),
      localCopyDir: path.join(scratch.dir, "copies-norecord"),
      now,
    });
    const good = await backupOffsite(req(at(1), "good"));
    const recordPut = (op: string, _n: number, key: string) => op === "PutObject" && key.endsWith(".json");
    const failed = backupName(at(2), false);
    h.setFault((op, n, key) => (recordPut(op, n, key) ? 503 : undefined));
    await assert.rejects(backupOffsite(req(at(2), "failed")), (e: UserError) => {
      assert.equal(e.exitCode, ExitCode.REMOTE, e.message);
      assert.match(
        e.message,
        new RegExp(
          `; ${root}${failed} was removed \\(without its record it is no backup\\); the complete backup is kept at `,
        ),
      );
      return true;
    });
    h.setFault(undefined);
    const store = await openCatalogue(root);
    assert.deepEqual(
      (await listCatalogue(store)).entries.map((e) => e.name),
      [good.name],
    );

    // The removal fails as well: the error says so, and the archive left without a record is passed over.
    h.setFault((op, n, key) => (recordPut(op, n, key) || op === "DeleteObject" ? 503 : undefined));
    await assert.rejects(backupOffsite(req(at(2), "failed")), (e: UserError) => {
      assert.match(
        e.message,
        new RegExp(
          `; ${root}${failed} could not be removed \\(delete ${root}${failed}: HTTP 503 .*\\): it stays without a record, `,
        ),
      );
      return true;
    });
    h.setFault(undefined);
    assert.deepEqual(
      (await listCatalogue(store)).entries.map((e) => [e.name, e.verified]),
      [
        [good.name, true],
        [failed, false],
      ],
    );
    const latest = await openBackupSource({ latest: true, at: root });
    assert.equal(latest.name, good.name);
    assert.equal(
      latest.note,
      `taking ${good.name}, the newest verified backup at ${root}; passed over a newer unverified one (${failed}): a backup that failed, or one without its record`,
    );
    latest.stream.destroy();
    // Only when none is verified does --latest take an unverified one, and it says so.
    await store.delete(good.name);
    const only = await openBackupSource({ latest: true, at: root });
    assert.equal(only.name, failed);
    assert.match(only.note ?? "", /^no backup at \S+ is verified .*; taking the newest, \S+, unverified$/);
    only.stream.destroy();
  });

  it("a local folder whose record cannot be written: the archive is removed again", async () => {
    const dir = path.join(scratch.dir, "norecord-dir");
    const at = (h: number) => new Date(Date.UTC(2026, 6, 2, h));
    const good = await backupOffsite({
      toDir: dir,
      encrypted: false,
      produce: bytesProducer(Buffer.from("g")),
      now: at(1),
    });
    const failed = backupName(at(2), false);
    // A folder where the record goes: its rename fails as a full disk's write would.
    await mkdir(path.join(dir, `${failed}.json`, "in-the-way"), { recursive: true });
    await assert.rejects(
      backupOffsite({ toDir: dir, encrypted: false, produce: bytesProducer(Buffer.from("f")), now: at(2) }),
      new RegExp(`; ${path.join(dir, failed).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} was removed`),
    );
    assert.deepEqual(
      (await readdir(dir)).filter((f) => !f.startsWith(".")).sort(),
      [good.name, `${good.name}.json`, `${failed}.json`].sort(),
    );
    assert.equal((await openBackupSource({ latest: true, at: dir })).name, good.name);
  });

  it("refuses to overwrite a name the user chose, moves a generated one on, and explains s3:// without a key", async () => {
    const now = new Date(Date.UTC(2026, 5, 1));
    const req = {
      toDir: `s3://${BUCKET}/dup/`,
      encrypted: false,
      produce: bytesProducer(Buffer.from("d")),
      now,
      localCopyDir: scratch.dir,
    };
    const first = await backupOffsite(req);
    const second = await backupOffsite(req);
    assert.equal(second.name, backupName(new Date(now.getTime() + 1000), false));
    await assert.rejects(
      backupOffsite({ ...req, toDir: undefined, to: `s3://${BUCKET}/dup/${first.name}` }),
      /already exists; not replacing a backup \(pass --force to replace it\)/,
    );
    await assert.rejects(
      backupOffsite({ to: `s3://${BUCKET}`, encrypted: false, produce: bytesProducer(Buffer.from("d")) }),
      (e: UserError) => e.exitCode === ExitCode.USAGE && /needs an object key/.test(e.message),
    );
    assert.ok((await stat(scratch.dir)).isDirectory());
  });
});
