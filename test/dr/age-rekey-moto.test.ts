/**
 * `dr rekey --from s3://` against moto's S3, a store that implements UploadPartCopy with
 * x-amz-copy-source-range (s3rver refuses it; `age-rekey-s3.test.ts` covers that fallback and
 * the harness's own emulation of the copy). The harness proxy in front of moto only counts the
 * requests and injects faults: the copied parts are moto's work. Skipped, saying why, where
 * `moto_server` is not installed.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { parseObjectLocation } from "../../src/storage/location.js";
import { openObject } from "../../src/storage/open-store.js";
import { DEFAULT_PART_SIZE, makeS3Client } from "../../src/storage/s3-store.js";
import { envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { motoMissing } from "../storage/support/moto.js";
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

const MOTO_MISSING = motoMissing();
const BUCKET = "dr-rekey-moto";
if (MOTO_MISSING) process.stdout.write(`# skipped: ${MOTO_MISSING}\n`);

describe(
  "dr rekey --from s3:// against moto (UploadPartCopy implemented by the store)",
  { skip: MOTO_MISSING },
  () => {
    let h: S3Harness;
    let scratch: { dir: string; cleanup: () => Promise<void> };
    let env: Record<string, string | undefined>;
    let sdd: string;
    let a: { file: string; recipient: string };
    let c: { file: string; recipient: string };
    const cli = (...args: string[]): Promise<CliResult> => runCli(["--sdd", sdd, ...args], { env });
    const rekey = (location: string, identity: string, ...change: string[]): Promise<CliResult> =>
      cli("--json", "dr", "rekey", "--from", location, "--identity-file", identity, ...change);

    before(async () => {
      h = await startS3Harness({ buckets: [BUCKET], server: "moto" });
      scratch = await scratchDir("bernstein-rekey-moto-");
      Object.assign(process.env, h.env);
      env = {
        ...envFor(scratch.dir),
        ...h.env,
        BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "copies"),
      };
      // 12 MiB of random bytes: the archive is over one 8 MiB part, so the rekey may copy part 2.
      const { ws } = await makeSmallWorkspace(scratch.dir, { bigBytes: 12 * 1024 * 1024 });
      sdd = ws.root;
      a = await keyPair(scratch.dir, "a.txt");
      c = await keyPair(scratch.dir, "c.txt", true);
    });
    after(async () => {
      await h?.close();
      await scratch?.cleanup();
    });
    beforeEach(() => {
      h.setFault(undefined);
      h.resetCounts();
    });

    async function backupTo(at: string): Promise<{ location: string; bytes: Buffer }> {
      const b = await cli("--json", "dr", "backup", "--to-dir", at, "--recipient", a.recipient);
      assert.equal(b.code, 0, b.stderr);
      const location = JSON.parse(b.stdout).path as string;
      const bytes = await bytesOf(location);
      assert.ok(bytes.length > 8 * 1024 * 1024, `archive of ${bytes.length} bytes is over one part`);
      return { location, bytes };
    }

    const objectOf = (location: string) => {
      const where = parseObjectLocation(location);
      assert.equal(where.kind, "s3");
      return where;
    };
    const etagOf = async (location: string): Promise<string | undefined> => {
      const { bucket: Bucket, key: Key } = objectOf(location);
      return (await makeS3Client().send(new HeadObjectCommand({ Bucket, Key }))).ETag;
    };

    /**
     * The requests of one rekey (from `old` to `now`) over two parts done by server copy: part 1
     * (the new header and the first payload bytes) uploaded, the rest of the payload copied by moto
     * from the old object, pinned to the ETag it had.
     */
    function assertCopiedInsideTheStore(
      what: string,
      location: string,
      old: Buffer,
      now: Buffer,
      etag?: string,
    ) {
      const payloadStart = (b: Buffer) => b.length - payloadOf(b).length;
      const from = payloadStart(old) + DEFAULT_PART_SIZE - payloadStart(now);
      const { bucket, key } = objectOf(location);
      assert.ok(etag, "the old object has an ETag");
      assert.deepEqual(
        h.partCopies,
        [{ source: `${bucket}/${key}`, range: `bytes=${from}-${old.length - 1}`, ifMatch: etag }],
        `${what}: the copied range`,
      );
      assert.equal(h.counts.get("CreateMultipartUpload"), 1, `${what}: one upload`);
      assert.equal(h.counts.get("UploadPartCopy"), 1, `${what}: part 2 copied inside the store`);
      assert.equal(h.counts.get("UploadPart"), 1, `${what}: only part 1 uploaded`);
      assert.equal(h.counts.get("PutObject"), 1, `${what}: the location's record only`);
      assert.equal(h.counts.get("CompleteMultipartUpload"), 1, what);
      assert.equal(h.counts.get("AbortMultipartUpload"), undefined, `${what}: nothing aborted`);
    }

    it("an archive over one part: add and remove a recipient with the payload copied inside moto; payload unchanged; restore with the new identity, the removed one refused; list --check clean; no upload left", async () => {
      const at = `s3://${BUCKET}/copy/`;
      const { location, bytes: before } = await backupTo(at);

      h.resetCounts();
      const etagBefore = await etagOf(location);
      const add = await rekey(location, a.file, "--add-recipient", c.recipient);
      assert.equal(add.code, 0, add.stderr);
      const added = JSON.parse(add.stdout).archives[0];
      assert.equal(added.action, "header-rewritten");
      assert.equal(added.method, "server-copy");
      assert.equal(added.record_updated, true);
      const afterAdd = await bytesOf(location);
      assertCopiedInsideTheStore("add", location, before, afterAdd, etagBefore);
      assert.ok(payloadOf(afterAdd).equals(payloadOf(before)), "payload bytes untouched");
      assert.equal(added.sha256, sha256(afterAdd));
      assert.equal(added.size_bytes, afterAdd.length);
      const { store, key } = await openObject(location);
      assert.equal((await store.head(key))!.metadata.sha256, sha256(afterAdd), "sha256 metadata");

      h.resetCounts();
      const etagAfterAdd = await etagOf(location);
      assert.notEqual(etagAfterAdd, etagBefore);
      const rm = await cli(
        "dr",
        "rekey",
        "--from",
        location,
        "--identity-file",
        c.file,
        "--remove-recipient",
        a.recipient,
      );
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stdout, /header rewritten, payload untouched \(payload copied inside the store\)/);
      const afterRm = await bytesOf(location);
      assertCopiedInsideTheStore("remove", location, afterAdd, afterRm, etagAfterAdd);
      assert.ok(payloadOf(afterRm).equals(payloadOf(before)), "payload bytes untouched");
      assert.deepEqual(await h.pendingUploads(BUCKET), [], "ListMultipartUploads: none pending");

      await assertRotated({
        cli,
        restore: (where, identity) => restoreWithIdentity(scratch.dir, env, where, identity),
        location,
        at,
        kept: c.file,
        removed: a.file,
        bytes: afterRm,
      });
    });

    it("moto's UploadPartCopy failing (503 every time): exit 7, one line, the old object whole, no upload left", async () => {
      const at = `s3://${BUCKET}/fail/`;
      const { location, bytes: before } = await backupTo(at);
      h.resetCounts();
      h.setFault(failAlways("UploadPartCopy"));
      const r = await rekey(location, a.file, "--add-recipient", c.recipient);
      h.setFault(undefined);
      assert.equal(r.code, 7, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /503/);
      assert.equal(
        h.counts.get("UploadPart") ?? 0,
        0,
        "no fall back to streaming after a failure other than 501",
      );
      assert.ok((await bytesOf(location)).equals(before), "the old object untouched");
      assert.deepEqual(await h.pendingUploads(BUCKET), []);
      const check = await cli("dr", "list", "--at", at, "--check");
      assert.equal(check.code, 0, check.stdout + check.stderr);
    });

    it("another writer replaces the object after its payload was copied, before part 1 is read: that read's If-Match fails, exit 7, the other writer's object untouched", async () => {
      const { location, bytes: before } = await backupTo(`s3://${BUCKET}/raced/`);
      let copied = false;
      let other: Buffer | undefined;
      h.setFault((op) => {
        if (op === "UploadPartCopy") copied = true;
        if (op !== "GetObject" || !copied || other) return undefined;
        const replaced = replaceObject(location, before);
        other = replaced.bytes;
        return { after: replaced.put };
      });
      const r = await rekey(location, a.file, "--add-recipient", c.recipient);
      assert.equal(r.code, 7, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /: the object was replaced while it was being rekeyed/);
      assert.ok(other && (await bytesOf(location)).equals(other), "the other writer's object, not a splice");
      assert.deepEqual(await h.pendingUploads(BUCKET), []);
    });
  },
);
