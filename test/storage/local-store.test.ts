/**
 * The folder store's check of a put against the caller's sha256 and size: a streamed source is
 * hashed as it is written and a mismatch leaves nothing; a body the caller hashed in its own
 * memory (PutOptions.sha256OfSource, an archive segment) is stored under the caller's sha256
 * without a second hash, its size still checked. A read hands out chunks of the size asked for.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { LocalStore } from "../../src/storage/local-store.js";
import { scratchDir } from "../helpers.js";

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("local store: a put checked against the caller's sha256 and size", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let store: LocalStore;
  before(async () => {
    scratch = await scratchDir("bernstein-local-store-");
    store = new LocalStore(scratch.dir);
  });
  after(async () => {
    await scratch.cleanup();
  });

  const body = Buffer.from("one line\n");
  const other = sha(Buffer.from("other bytes\n"));

  it("a streamed source whose bytes have another sha256 is refused, nothing left", async () => {
    await assert.rejects(
      store.put("streamed", Readable.from([body]), { sha256: other, size: body.length }),
      /written bytes have sha256/,
    );
    assert.deepEqual(await readdir(scratch.dir), []);
  });

  it("a body hashed in the caller's memory is stored under its sha256 without a second hash", async () => {
    // A sha256 that is not the body's shows that the store did not hash it again: only the
    // caller, which computed it over these very buffers, could be wrong about it.
    const r = await store.put("segment", Readable.from([body]), {
      sha256: other,
      sha256OfSource: true,
      size: body.length,
    });
    assert.equal(r.sha256, other);
    assert.equal((await store.head("segment"))?.metadata.sha256, other);
  });

  it("the size of such a body is still checked, nothing left on a mismatch", async () => {
    await assert.rejects(
      store.put("short", Readable.from([body]), {
        sha256: sha(body),
        sha256OfSource: true,
        size: body.length + 1,
      }),
      /wrote 9 bytes, expected 10/,
    );
    assert.ok(!(await readdir(scratch.dir)).some((n) => n.includes("short")));
  });
});

describe("local store: a read in chunks of the size asked for", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let store: LocalStore;
  const body = randomBytes(200_000);
  before(async () => {
    scratch = await scratchDir("bernstein-local-store-read-");
    store = new LocalStore(scratch.dir);
    await store.put("object", Readable.from([body]));
  });
  after(async () => {
    await scratch.cleanup();
  });

  async function chunksOf(stream: Readable): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return chunks;
  }

  it("whole or a range, no chunk is larger than chunkBytes and the bytes are the object's", async () => {
    for (const range of [undefined, { start: 1_000, end: 150_001 }]) {
      const chunks = await chunksOf(await store.get("object", range, { chunkBytes: 16 * 1024 }));
      assert.ok(chunks.every((c) => c.length <= 16 * 1024));
      assert.deepEqual(Buffer.concat(chunks), range ? body.subarray(range.start, range.end) : body);
    }
  });

  it("without chunkBytes, the stream's own (larger) chunks", async () => {
    const chunks = await chunksOf(await store.get("object"));
    assert.ok(chunks.some((c) => c.length > 16 * 1024));
    assert.deepEqual(Buffer.concat(chunks), body);
  });
});
