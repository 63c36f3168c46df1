import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { Readable } from "node:stream";
import { ListMultipartUploadsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ExitCode, UserError } from "../../src/errors/errors.js";
import { S3Store, makeS3Client } from "../../src/storage/s3-store.js";
import { sha256Of } from "../../src/storage/catalogue.js";
import { failAlways, failFirst, startS3Harness, type S3Harness } from "./support/s3-harness.js";

const BUCKET = "backups";
let h: S3Harness;

function store(prefix = "", opts: { retries?: number; partSize?: number; accessKey?: string } = {}): S3Store {
  process.env.BERNSTEIN_S3_BACKOFF_MS = "5";
  process.env.AWS_ACCESS_KEY_ID = opts.accessKey ?? "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
  const client = makeS3Client({ endpoint: h.endpoint, region: "us-east-1" });
  return new S3Store(client, BUCKET, prefix, {
    retries: opts.retries,
    partSize: opts.partSize,
    concurrency: 2,
  });
}

function sha(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

/** A stream of `size` pseudo-random bytes in small chunks (as a file stream would deliver). */
function chunked(buf: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += chunk) yield buf.subarray(i, i + chunk);
    })(),
  );
}

async function rejectsWith(p: Promise<unknown>, code: number, re: RegExp): Promise<UserError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.equal(err.exitCode, code, err.message);
    assert.match(err.message, re);
    return err;
  }
  assert.fail("expected a rejection");
}

describe("S3Store against s3rver", () => {
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
  });
  after(async () => {
    await h.close();
  });
  beforeEach(() => {
    h.setFault(undefined);
    h.resetCounts();
  });

  it("streams a multipart upload and reads back every byte, metadata and listing", async () => {
    const data = randomBytes(12 * 1024 * 1024 + 12345);
    const s = store("site-a/", { partSize: 5 * 1024 * 1024 });
    const stored: number[] = [];
    const res = await s.put("big.bin", chunked(data), {
      sha256: sha(data),
      metadata: { "file-count": "7" },
      onProgress: (n) => stored.push(n),
    });
    assert.equal(res.size, data.length);
    // Progress: one report per part the store accepted, growing to the whole size.
    assert.equal(stored.length, 3);
    assert.deepEqual(
      [...stored].sort((a, b) => a - b),
      stored,
    );
    assert.equal(stored.at(-1), data.length);
    assert.equal(res.sha256, sha(data));
    assert.equal(res.retries, 0);
    assert.equal(h.counts.get("UploadPart"), 3);
    const head = await s.head("big.bin");
    assert.equal(head?.size, data.length);
    assert.equal(head?.metadata.sha256, sha(data));
    assert.equal(head?.metadata["file-count"], "7");
    const back = await sha256Of(await s.get("big.bin"));
    assert.equal(back.sha256, sha(data));
    assert.deepEqual(
      (await s.list()).map((o) => o.key),
      ["big.bin"],
    );
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
    await s.delete("big.bin");
    assert.equal(await s.head("big.bin"), undefined);
  });

  it("uploads small objects with one PutObject and lists only the prefix, not deeper keys", async () => {
    const s = store("site-b/");
    await s.put("a.txt", Readable.from([Buffer.from("alpha")]), { sha256: sha(Buffer.from("alpha")) });
    await s.put("sub/deeper.txt", Readable.from([Buffer.from("x")]));
    await s.put("empty", Readable.from([]));
    assert.equal(h.counts.get("CreateMultipartUpload"), undefined);
    assert.deepEqual(
      (await s.list()).map((o) => `${o.key}:${o.size}`),
      ["a.txt:5", "empty:0"],
    );
  });

  it("a PutObject whose answer states our sha256 back is not read back; one whose answer does not is (HeadObject)", async () => {
    const s = store("confirmed/");
    const data = Buffer.from("segment bytes");
    try {
      await s.put("stated", Readable.from([data]), { sha256: sha(data), size: data.length });
      assert.equal(h.counts.get("PutObject"), 1);
      assert.equal(h.counts.get("HeadObject"), undefined, "the store stated the checksum it computed");
      h.setChecksumAnswer(false);
      await s.put("unstated", Readable.from([data]), { sha256: sha(data), size: data.length });
      assert.equal(h.counts.get("HeadObject"), 1, "no checksum in the answer: read back");
      // The read-back still judges: an answer without the checksum, then a HEAD that fails.
      h.setFault((op) => (op === "HeadObject" ? 500 : undefined));
      await rejectsWith(
        s.put("unchecked", Readable.from([data]), { sha256: sha(data) }),
        ExitCode.REMOTE,
        /HTTP 500/,
      );
      h.setFault(undefined);
      assert.equal(await s.head("unchecked"), undefined, "a put not read back leaves no object");
      assert.equal((await s.head("stated"))?.metadata.sha256, sha(data));
    } finally {
      h.setChecksumAnswer(true);
    }
  });

  it("503 twice then success: the upload succeeds after exactly 2 retries", async () => {
    const data = randomBytes(11 * 1024 * 1024);
    const s = store("retry/", { partSize: 5 * 1024 * 1024 });
    h.setFault(failFirst("UploadPart", 2));
    const retries: string[] = [];
    const res = await s.put("obj", chunked(data), {
      sha256: sha(data),
      onRetry: (r) => retries.push(r.error),
    });
    assert.equal(res.retries, 2);
    assert.equal(retries.length, 2);
    assert.match(retries[0], /503/);
    assert.equal((await sha256Of(await s.get("obj"))).sha256, sha(data));
  });

  it("connection resets are retried too", async () => {
    const s = store("reset/");
    h.setFault(failFirst("PutObject", 1, "reset"));
    const res = await s.put("obj", Readable.from([Buffer.from("hello")]));
    assert.equal(res.retries, 1);
  });

  it(
    "a download cut part-way fails its reader with exit 7, even a reader that comes after the cut",
    { timeout: 20_000 },
    async () => {
      const s = store("cut/");
      const data = randomBytes(300_000);
      await s.put("obj", Readable.from([data]));
      h.setFault(failAlways("GetObject", "cut"));
      const drain = async (body: Readable): Promise<number> => {
        let n = 0;
        for await (const c of body) n += (c as Buffer).length;
        return n;
      };
      await rejectsWith(drain(await s.get("obj")), ExitCode.REMOTE, /^download s3:\/\/backups\/cut\/obj: /);
      // A reader that starts only after the connection dropped (as a restore does after taking its
      // lock) gets the same error.
      const late = await s.get("obj");
      // Nobody reads it yet: its stream ends (closes, holding the error) once the cut arrives.
      if (!late.destroyed) await new Promise((r) => late.once("close", r));
      await rejectsWith(drain(late), ExitCode.REMOTE, /^download s3:\/\/backups\/cut\/obj: /);
    },
  );

  it("503 always: exit 7 after --retries, the multipart upload is aborted, no object remains", async () => {
    const data = randomBytes(11 * 1024 * 1024);
    const s = store("down/", { partSize: 5 * 1024 * 1024, retries: 3 });
    h.setFault(failAlways("UploadPart"));
    await rejectsWith(
      s.put("obj", chunked(data), { sha256: sha(data) }),
      ExitCode.REMOTE,
      /503.*gave up after 4 attempts/,
    );
    h.setFault(undefined);
    assert.equal(h.counts.get("AbortMultipartUpload"), 1);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
    const listed = await makeS3Client({ endpoint: h.endpoint }).send(
      new ListMultipartUploadsCommand({ Bucket: BUCKET }),
    );
    assert.equal(listed.Uploads?.length ?? 0, 0);
    assert.equal(await s.head("obj"), undefined);
  });

  it("a failed upload whose abort fails too: the error names the pending upload id and how to remove it", async () => {
    const data = randomBytes(11 * 1024 * 1024);
    const s = store("stuck/", { partSize: 5 * 1024 * 1024, retries: 0 });
    h.setFault((op) => (op === "UploadPart" || op === "AbortMultipartUpload" ? "reset" : undefined));
    const err = await rejectsWith(
      s.put("obj", chunked(data), { sha256: sha(data) }),
      ExitCode.REMOTE,
      /^upload /,
    );
    h.setFault(undefined);
    const pending = await h.pendingUploads(BUCKET);
    assert.equal(pending.length, 1);
    const [id] = pending;
    assert.doesNotMatch(err.message, /\n/);
    assert.ok(
      err.message.includes(
        `; the unfinished upload ${id} to s3://backups/stuck/obj could not be aborted (`,
      ) &&
        err.message.includes(
          `remove it with 'aws s3api abort-multipart-upload --bucket backups --key stuck/obj --upload-id ${id}'`,
        ),
      err.message,
    );
    assert.equal(await s.cleanUpFailedPut("stuck/obj", id, false), undefined);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("a source whose bytes do not match the expected sha256 fails and leaves nothing", async () => {
    const data = randomBytes(6 * 1024 * 1024);
    const s = store("mismatch/", { partSize: 5 * 1024 * 1024 });
    await rejectsWith(
      s.put("obj", chunked(data), { sha256: "0".repeat(64) }),
      ExitCode.CORRUPT,
      /expected 0000/,
    );
    assert.equal(await s.head("obj"), undefined);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("a body of announced size is not hashed by the client: a wrong stated sha256 is refused by the store and leaves nothing", async () => {
    const s = store("stated/");
    const data = randomBytes(64 * 1024);
    await rejectsWith(
      s.put("wrong", Readable.from([data]), { sha256: sha(randomBytes(8)), size: data.length }),
      ExitCode.REMOTE,
      /BadDigest|SHA256/,
    );
    assert.equal(await s.head("wrong"), undefined);
    const right = await s.put("right", Readable.from([data]), { sha256: sha(data), size: data.length });
    assert.equal(right.sha256, sha(data));
    assert.equal((await s.head("right"))?.metadata.sha256, sha(data));
  });

  it("an object of announced size goes in one PutObject; a stream longer or shorter than announced leaves nothing", async () => {
    const s = store("sized/", { partSize: 5 * 1024 * 1024 });
    const data = randomBytes(300 * 1024);
    await s.put("exact", chunked(data), { sha256: sha(data), size: data.length });
    assert.equal(h.counts.get("CreateMultipartUpload"), undefined);
    assert.equal((await s.head("exact"))?.size, data.length);
    const big = randomBytes(6 * 1024 * 1024);
    await rejectsWith(
      s.put("longer", chunked(big), { size: data.length }),
      ExitCode.CORRUPT,
      /expected 307200/,
    );
    await rejectsWith(
      s.put("shorter", chunked(data), { size: data.length + 1 }),
      ExitCode.CORRUPT,
      /expected 307201/,
    );
    assert.equal(await s.head("longer"), undefined);
    assert.equal(await s.head("shorter"), undefined);
    assert.deepEqual(await h.pendingUploads(BUCKET), []);
  });

  it("the harness checks the payload hash SigV4 signs, like AWS (XAmzContentSHA256Mismatch)", async () => {
    const client = makeS3Client({ endpoint: h.endpoint });
    const put = new PutObjectCommand({
      Bucket: BUCKET,
      Key: "bad-payload-hash",
      Body: Buffer.from("payload"),
    });
    put.middlewareStack.add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers["x-amz-content-sha256"] = sha(
          Buffer.from("other"),
        );
        return next(args);
      },
      { step: "build", name: "wrongPayloadSha256" },
    );
    await assert.rejects(client.send(put), (err: Error) => err.name === "XAmzContentSHA256Mismatch");
  });

  it("the harness validates x-amz-checksum-sha256 like AWS (BadDigest)", async () => {
    const client = makeS3Client({ endpoint: h.endpoint });
    await assert.rejects(
      client.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: "bad-digest",
          Body: Buffer.from("payload"),
          ChecksumSHA256: createHash("sha256").update("other").digest("base64"),
        }),
      ),
      (err: Error) => err.name === "BadDigest",
    );
  });

  it("a missing bucket, a wrong access key and a missing object give clear one-line errors", async () => {
    const missing = new S3Store(makeS3Client({ endpoint: h.endpoint }), "no-such-bucket", "", {});
    await rejectsWith(missing.list(), ExitCode.REMOTE, /bucket does not exist/);
    await rejectsWith(
      missing.put("x", Readable.from([Buffer.from("x")])),
      ExitCode.REMOTE,
      /bucket does not exist/,
    );
    await rejectsWith(
      store("", { accessKey: "WRONG" }).list(),
      ExitCode.REMOTE,
      /access denied \(InvalidAccessKeyId\)/,
    );
    await rejectsWith(store().get("nothing-here"), ExitCode.USAGE, /no such object/);
  });
});
