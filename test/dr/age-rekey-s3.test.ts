/**
 * `dr rekey` of `.age` archives on S3 (the real s3rver of the harness): the header rewritten in
 * front of the same payload bytes, the old object whole until the new one completes, the
 * location's record, the object's sha256 metadata and the audit chain naming the new bytes.
 * s3rver has no UploadPartCopy (501 NotImplemented): an archive over one part tries the copy,
 * aborts that upload and streams the payload again. The server-copy way runs against a real
 * implementation in `age-rekey-moto.test.ts` (moto, where installed); here it runs, on every
 * machine, where the harness answers UploadPartCopy itself (`setPartCopy`: a ranged GET and an
 * UploadPart on s3rver), which also keeps AWS's x-amz-copy-source-if-match check that moto skips.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { openObject } from "../../src/storage/open-store.js";
import { envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { failAlways, startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";
import { keyPair } from "./support/age-keys.js";
import {
  assertRotated,
  bytesOf,
  payloadOf,
  replaceObject,
  restoreWithIdentity,
  sha256,
} from "./support/age-objects.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const BUCKET = "dr-rekey";

describe("dr rekey --from s3:// and --all --at s3:// (s3rver)", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let env: Record<string, string | undefined>;
  let sdd: string;
  let bigSdd: string;
  let a: { file: string; recipient: string };
  let c: { file: string; recipient: string };
  const cli = (...args: string[]): Promise<CliResult> => runCli(["--sdd", sdd, ...args], { env });
  /** `dr rekey --from LOCATION --identity-file IDENTITY` and the change. */
  const rekeyArgs = (location: string, identity: string, ...change: string[]): string[] => [
    "dr",
    "rekey",
    "--from",
    location,
    "--identity-file",
    identity,
    ...change,
  ];
  const rekey = (location: string, identity: string, ...change: string[]): Promise<CliResult> =>
    cli("--json", ...rekeyArgs(location, identity, ...change));

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-rekey-s3-");
    Object.assign(process.env, h.env);
    env = { ...envFor(scratch.dir), ...h.env, BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "copies") };
    // 12 MiB of random bytes: the archive is over one 8 MiB part, so the upload is multipart.
    const { ws } = await makeSmallWorkspace(scratch.dir, { bigBytes: 12 * 1024 * 1024 });
    sdd = bigSdd = ws.root;
    a = await keyPair(scratch.dir, "a.txt");
    c = await keyPair(scratch.dir, "c.txt", true);
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });
  beforeEach(() => {
    sdd = bigSdd;
    env.BERNSTEIN_AUDIT_KEY_PATH = path.join(scratch.dir, "key", "audit.key");
    h.setFault(undefined);
    h.setPartCopy(false);
    h.resetCounts();
  });

  async function backupTo(at: string): Promise<string> {
    const b = await cli("--json", "dr", "backup", "--to-dir", at, "--recipient", a.recipient);
    assert.equal(b.code, 0, b.stderr);
    return JSON.parse(b.stdout).path as string;
  }

  /**
   * One backup of the 12 MiB workspace, shared by the cases whose rekey must leave the object
   * untouched (each asserts that it did, byte for byte, before the next one uses it).
   */
  let untouched: Promise<string> | undefined;
  const untouchedBackup = (): Promise<string> => (untouched ??= backupTo(`s3://${BUCKET}/fail-untouched/`));

  const restoreWith = (location: string, identity: string): Promise<CliResult> =>
    restoreWithIdentity(scratch.dir, env, location, identity);

  for (const big of [true, false]) {
    it(`${big ? "an archive over one part (multipart, UploadPartCopy refused: streamed)" : "a small archive (one PutObject)"}: add and remove a recipient; payload unchanged; restore with the new identity, the removed one refused; list --check clean`, async () => {
      if (!big) {
        // The small workspace: a fresh one without the 12 MiB file.
        const { ws } = await makeSmallWorkspace(path.join(scratch.dir, "small"));
        sdd = ws.root;
        env.BERNSTEIN_AUDIT_KEY_PATH = path.join(scratch.dir, "small", "key", "audit.key");
      }
      const at = `s3://${BUCKET}/${big ? "big" : "small"}/`;
      const location = await backupTo(at);
      const before = await bytesOf(location);
      assert.equal(before.length > 8 * 1024 * 1024, big, `archive of ${before.length} bytes`);

      h.resetCounts();
      const add = await rekey(location, a.file, "--add-recipient", c.recipient);
      assert.equal(add.code, 0, add.stderr);
      const added = JSON.parse(add.stdout).archives[0];
      assert.equal(added.action, "header-rewritten");
      assert.equal(added.method, "streamed");
      assert.equal(added.record_updated, true);
      if (big) {
        assert.equal(h.counts.get("CreateMultipartUpload"), 2, "the copy attempt, then the streamed upload");
        assert.equal(h.counts.get("UploadPartCopy"), 1, "one part copy tried, refused 501, not retried");
        assert.equal(h.counts.get("AbortMultipartUpload"), 1, "the copy attempt aborted");
      } else {
        assert.equal(h.counts.get("CreateMultipartUpload"), undefined);
        assert.equal(h.counts.get("PutObject"), 2, "the archive, then its record");
      }
      assert.deepEqual(await h.pendingUploads(BUCKET), []);
      const afterAdd = await bytesOf(location);
      assert.ok(payloadOf(afterAdd).equals(payloadOf(before)), "payload bytes untouched");
      assert.equal(added.sha256, sha256(afterAdd));
      const { store, key } = await openObject(location);
      assert.equal((await store.head(key))!.metadata.sha256, sha256(afterAdd), "sha256 metadata");

      const rm = await cli(...rekeyArgs(location, c.file, "--remove-recipient", a.recipient));
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(
        rm.stdout,
        /header rewritten, payload untouched \(payload streamed again, byte for byte\)/,
      );
      const afterRm = await bytesOf(location);
      assert.ok(payloadOf(afterRm).equals(payloadOf(before)));

      await assertRotated({
        cli,
        restore: restoreWith,
        location,
        at,
        kept: c.file,
        removed: a.file,
        bytes: afterRm,
      });
    });
  }

  it("a store with UploadPartCopy: part 1 uploaded, the rest of the payload copied inside the store; it fails: exit 7, the old object whole", async () => {
    h.setPartCopy(true);
    const at = `s3://${BUCKET}/copy/`;
    const location = await backupTo(at);
    const before = await bytesOf(location);
    h.resetCounts();
    const r = await rekey(location, a.file, "--add-recipient", c.recipient);
    assert.equal(r.code, 0, r.stderr);
    const done = JSON.parse(r.stdout).archives[0];
    assert.equal(done.method, "server-copy");
    assert.equal(h.counts.get("CreateMultipartUpload"), 1);
    assert.equal(h.counts.get("UploadPartCopy"), 1, "12 MiB: part 1 of 8 MiB, one copied part");
    assert.equal(h.counts.get("UploadPart"), 1, "only part 1 goes up");
    assert.equal(h.counts.get("AbortMultipartUpload"), undefined);
    const after = await bytesOf(location);
    assert.ok(payloadOf(after).equals(payloadOf(before)), "payload bytes untouched");
    assert.equal(done.sha256, sha256(after));
    const { store, key } = await openObject(location);
    assert.equal((await store.head(key))!.metadata.sha256, sha256(after));
    assert.equal((await restoreWith(location, c.file)).code, 0);
    const check = await cli("--json", "dr", "list", "--at", at, "--check");
    assert.equal(check.code, 0, check.stdout + check.stderr);

    h.setFault(failAlways("UploadPartCopy"));
    const failed = await rekey(location, c.file, "--remove-recipient", a.recipient);
    assert.equal(failed.code, 7, failed.stderr);
    assert.equal(failed.stderr.trim().split("\n").length, 1, failed.stderr);
    assert.ok((await bytesOf(location)).equals(after), "the old object untouched");
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("another writer replaces the object before its payload is copied: the copy's ETag precondition fails, exit 7, the other writer's object untouched", async () => {
    h.setPartCopy(true);
    const location = await backupTo(`s3://${BUCKET}/raced/`);
    const before = await bytesOf(location);
    let other: Buffer | undefined;
    h.setFault((op, nth) => {
      if (op !== "UploadPartCopy" || nth !== 1) return undefined;
      const replaced = replaceObject(location, before);
      other = replaced.bytes;
      return { after: replaced.put };
    });
    const r = await rekey(location, a.file, "--add-recipient", c.recipient);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      /rekey s3:\/\/dr-rekey\/raced\/.*: the object was replaced while it was being rekeyed/,
    );
    assert.ok(other && (await bytesOf(location)).equals(other), "the other writer's object, not a splice");
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("another writer replaces the object while its payload is read for the new sha256: exit 7, the other writer's object untouched", async () => {
    h.setPartCopy(true);
    const location = await backupTo(`s3://${BUCKET}/raced-read/`);
    const before = await bytesOf(location);
    let other: Buffer | undefined;
    let reads = 0;
    h.setFault((op, _nth, key) => {
      // The first read of the archive is its header; the second, the payload hashed for the new sha256.
      if (op !== "GetObject" || !key.endsWith(".age") || ++reads !== 2) return undefined;
      const replaced = replaceObject(location, before);
      other = replaced.bytes;
      return { after: replaced.put };
    });
    const r = await rekey(location, a.file, "--add-recipient", c.recipient);
    h.setFault(undefined);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /the object was replaced while it was being rekeyed/);
    assert.ok(other && (await bytesOf(location)).equals(other), "the other writer's object, not a splice");
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("a wrong identity: exit 4, nothing written, the object unchanged", async () => {
    const location = await untouchedBackup();
    const before = await bytesOf(location);
    h.resetCounts();
    const r = await cli(...rekeyArgs(location, c.file, "--add-recipient", c.recipient));
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /cannot decrypt .*: none of the 1 identities opens this archive/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    for (const op of ["PutObject", "UploadPart", "CreateMultipartUpload", "DeleteObject"] as const)
      assert.equal(h.counts.get(op), undefined, op);
    assert.ok((await bytesOf(location)).equals(before));
  });

  for (const op of ["UploadPart", "CompleteMultipartUpload", "PutObject"] as const) {
    it(`the store failing (${op} answers 503 every time): exit 7, the old object whole, no upload left`, async () => {
      const small = op === "PutObject";
      const at = `s3://${BUCKET}/fail-${small ? op : "untouched"}/`;
      if (small) {
        const { ws } = await makeSmallWorkspace(path.join(scratch.dir, `f-${op}`));
        sdd = ws.root;
        env.BERNSTEIN_AUDIT_KEY_PATH = path.join(scratch.dir, `f-${op}`, "key", "audit.key");
      }
      const location = small ? await backupTo(at) : await untouchedBackup();
      const before = await bytesOf(location);
      assert.equal(before.length > 8 * 1024 * 1024, !small);
      h.setFault(failAlways(op));
      const r = await rekey(location, a.file, "--add-recipient", c.recipient);
      h.setFault(undefined);
      assert.equal(r.code, 7, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /rekey s3:\/\/dr-rekey\/fail-.*: .*503/);
      assert.ok((await bytesOf(location)).equals(before), "the old object untouched");
      assert.deepEqual(await h.pendingUploads(BUCKET), []);
      const check = await cli("dr", "list", "--at", at, "--check");
      assert.equal(check.code, 0, check.stdout + check.stderr);
    });
  }

  it("--all --at s3://: every .age backup there rekeyed; run again, each is already done", async () => {
    const { ws } = await makeSmallWorkspace(path.join(scratch.dir, "all"));
    sdd = ws.root;
    env.BERNSTEIN_AUDIT_KEY_PATH = path.join(scratch.dir, "all", "key", "audit.key");
    const at = `s3://${BUCKET}/all/`;
    const first = await backupTo(at);
    const second = await backupTo(at);
    assert.notEqual(first, second);
    const rekeyAll = () =>
      cli(
        "--json",
        "dr",
        "rekey",
        "--all",
        "--at",
        at,
        "--identity-file",
        a.file,
        "--recipients-file",
        c.file + ".pub",
      );
    await writeFile(`${c.file}.pub`, `${c.recipient}\n`);
    const r = await rekeyAll();
    assert.equal(r.code, 0, r.stderr);
    const done = JSON.parse(r.stdout).archives;
    assert.deepEqual(
      done.map((o: { path: string; action: string }) => [o.path, o.action]),
      [
        [first, "header-rewritten"],
        [second, "header-rewritten"],
      ],
    );
    const again = await rekeyAll();
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      JSON.parse(again.stdout).archives.map((o: { action: string }) => o.action),
      ["already-done", "already-done"],
    );
    assert.equal((await restoreWith(second, c.file)).code, 0);
    assert.equal((await restoreWith(first, a.file)).code, 4);
  });
});
