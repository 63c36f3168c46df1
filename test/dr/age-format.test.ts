/**
 * The `.age` format at the library level: our STREAM payload (node:crypto) and header against
 * the age-encryption library both ways, against the `age` command-line tool both ways (skipped,
 * with the reason printed, when it is not installed), tampering, and the header-only rekey.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { Decrypter, Encrypter } from "age-encryption";
import { AgeDecryptor } from "../../src/dr/age/decrypt.js";
import { AgeEncryptor, ageEncryptStream } from "../../src/dr/age/encrypt.js";
import { AgeFormatError } from "../../src/dr/age/header.js";
import {
  AgeIdentityError,
  BadRecipientError,
  checkRecipients,
  generateIdentityLine,
  recipientFingerprint,
  startFileKeyUnwrap,
} from "../../src/dr/age/keys.js";
import type { KeyCache } from "../../src/dr/fernet.js";
import { startKeysAhead } from "../../src/dr/keys-ahead.js";
import { openArchiveFile } from "../../src/dr/restore.js";
import { rekeyAgeFile } from "../../src/dr/age/rekey.js";
import { AgePayloadError, CHUNK_BYTES } from "../../src/dr/age/stream.js";
import { scratchDir } from "../helpers.js";

const SEED = Number(process.env.AGE_TEST_SEED ?? 17);
/** Deterministic bytes (seeded), so a failure names what it ran on. */
function bytesOf(n: number, seed = SEED): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash("sha256").update(String(seed)).digest();
  for (let i = 0; i < n; i += 32) {
    block.copy(out, i, 0, Math.min(32, n - i));
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

async function ourEncrypt(plain: Buffer, recipients: string[], pieces = 7): Promise<Buffer> {
  const out: Buffer[] = [];
  const enc = await AgeEncryptor.create(recipients);
  for (let i = 0; i < pieces; i++) {
    const a = Math.floor((plain.length * i) / pieces);
    const b = Math.floor((plain.length * (i + 1)) / pieces);
    out.push(...enc.update(plain.subarray(a, b)));
  }
  out.push(...enc.final());
  return Buffer.concat(out);
}

async function ourDecrypt(file: Buffer, identities: string[], piece = 10_000): Promise<Buffer> {
  const dec = new AgeDecryptor(identities);
  const out: Buffer[] = [];
  for (let i = 0; i < file.length; i += piece) out.push(...(await dec.update(file.subarray(i, i + piece))));
  out.push(dec.final());
  return Buffer.concat(out);
}

async function libDecrypt(file: Buffer, identity: string): Promise<Buffer> {
  const d = new Decrypter();
  d.addIdentity(identity);
  return Buffer.from(await d.decrypt(new Uint8Array(file)));
}

// Sizes around the chunk boundaries: empty, one byte, exactly one chunk, one chunk plus one, several.
const SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES, 3 * CHUNK_BYTES + 12345];

test(`our encryption opens with the age-encryption library, X25519 and hybrid, at chunk boundaries (seed ${SEED})`, async () => {
  const x = await generateIdentityLine(false);
  const pq = await generateIdentityLine(true);
  assert.match(x.recipient, /^age1[02-9ac-hj-np-z]{58}$/);
  assert.match(pq.recipient, /^age1pq1/);
  assert.match(pq.identity, /^AGE-SECRET-KEY-PQ-1/);
  for (const size of SIZES) {
    const plain = bytesOf(size);
    const file = await ourEncrypt(plain, [x.recipient, pq.recipient]);
    assert.ok(file.subarray(0, 22).equals(Buffer.from("age-encryption.org/v1\n")), "binary, not armored");
    assert.ok((await libDecrypt(file, x.identity)).equals(plain), `library, X25519, ${size} bytes`);
    assert.ok((await libDecrypt(file, pq.identity)).equals(plain), `library, hybrid, ${size} bytes`);
    assert.ok((await ourDecrypt(file, [pq.identity])).equals(plain), `ours, hybrid, ${size} bytes`);
  }
});

test("the library's encryption opens with ours, at chunk boundaries", async () => {
  const x = await generateIdentityLine(false);
  for (const size of SIZES) {
    const plain = bytesOf(size, SEED + size);
    const e = new Encrypter();
    e.addRecipient(x.recipient);
    const file = Buffer.from(await e.encrypt(new Uint8Array(plain)));
    assert.ok((await ourDecrypt(file, [x.identity], 4096)).equals(plain), `${size} bytes`);
  }
});

test("a wrong identity is AgeIdentityError naming how many identities were tried and the stanzas", async () => {
  const a = await generateIdentityLine(false);
  const b = await generateIdentityLine(false);
  const c = await generateIdentityLine(true);
  const file = await ourEncrypt(bytesOf(1000), [a.recipient, c.recipient]);
  await assert.rejects(ourDecrypt(file, [b.identity]), (err: Error) => {
    assert.ok(err instanceof AgeIdentityError);
    assert.match(
      err.message,
      /^none of the 1 identities opens this archive; it is encrypted to recipients 1 X25519 stanza, 1 mlkem768x25519 stanza$/,
    );
    return true;
  });
  assert.ok(
    (await ourDecrypt(file, [b.identity, a.identity])).equals(bytesOf(1000)),
    "any of several identities",
  );
});

test("a file key unwrapped ahead from the file's first bytes is the one the decryptor uses; a failure ahead is reported at the read", async () => {
  const a = await generateIdentityLine(false);
  const b = await generateIdentityLine(true);
  const enc = await AgeEncryptor.create([a.recipient, b.recipient]);
  const file = Buffer.concat([...enc.update(bytesOf(1000)), ...enc.final()]);
  const cache: KeyCache = new Map();
  startFileKeyUnwrap(bytesOf(4096), [a.identity], cache);
  startFileKeyUnwrap(file.subarray(0, 200), [a.identity], cache);
  assert.equal(cache.size, 0, "not age, or the header not complete: nothing to start");
  startFileKeyUnwrap(file, [b.identity], cache);
  startFileKeyUnwrap(file, [b.identity], cache);
  assert.equal(cache.size, 1);
  const [id, early] = [...cache][0]!;
  assert.ok((await early).equals(enc.fileKey));
  // The decryptor takes its key from there: a wrong key in its place fails the (last) chunk.
  cache.set(id, Promise.resolve(Buffer.alloc(16)));
  const fooled = new AgeDecryptor([b.identity], cache);
  await fooled.update(file);
  assert.throws(() => fooled.final(), AgePayloadError);
  const right = new AgeDecryptor([a.identity], cache);
  assert.ok(Buffer.concat([...(await right.update(file)), right.final()]).equals(bytesOf(1000)));

  // An identity that does not open it: the same error, when the decryptor reaches the header.
  const other = await generateIdentityLine(false);
  startFileKeyUnwrap(file, [other.identity], cache);
  await assert.rejects(
    new AgeDecryptor([other.identity], cache).update(file),
    /^AgeIdentityError: none of the 1 identities opens this archive; it is encrypted to recipients 1 X25519 stanza, 1 mlkem768x25519 stanza$/,
  );

  // From the first bytes of the stream a reader is about to read, as every reader starts it:
  // the reader still gets every byte.
  const { dir, cleanup } = await scratchDir();
  try {
    const onDisk = path.join(dir, "f.tar.gz.age");
    await writeFile(onDisk, file);
    const fromFile: KeyCache = new Map();
    const stream = await openArchiveFile(onDisk);
    await startKeysAhead(stream, { identities: [a.identity] }, fromFile);
    assert.ok((await [...fromFile.values()][0]!).equals(enc.fileKey));
    assert.ok(Buffer.concat(await stream.toArray()).equals(file));
  } finally {
    await cleanup();
  }
});

test("every altered header byte, every altered payload byte and every truncation is refused", async () => {
  const a = await generateIdentityLine(false);
  const plain = bytesOf(2 * CHUNK_BYTES + 100);
  const file = await ourEncrypt(plain, [a.recipient]);
  const headerEnd = file.indexOf("\n--- ") + 1;
  const positions = new Set<number>();
  for (let i = 0; i < headerEnd + 60; i++) positions.add(i);
  for (let i = 0; i < 200; i++) positions.add(headerEnd + Math.floor((file.length - headerEnd) * (i / 200)));
  positions.add(file.length - 1);
  for (const at of positions) {
    const bad = Buffer.from(file);
    bad[at] = bad[at]! ^ 0x01;
    await assert.rejects(
      ourDecrypt(bad, [a.identity]),
      (err: Error) =>
        err instanceof AgeFormatError || err instanceof AgePayloadError || err instanceof AgeIdentityError,
      `flip at ${at}`,
    );
  }
  const cuts = [10, headerEnd, headerEnd + 20, headerEnd + 16 + CHUNK_BYTES + 16, file.length - 1];
  for (const cut of cuts) {
    await assert.rejects(
      ourDecrypt(file.subarray(0, cut), [a.identity]),
      (err: Error) => err instanceof AgeFormatError || err instanceof AgePayloadError,
      `cut at ${cut}`,
    );
  }
  await assert.rejects(ourDecrypt(Buffer.concat([file, Buffer.alloc(1)]), [a.identity]), AgePayloadError);
});

test("a malformed recipient is named; fingerprints are stable and short", async () => {
  const a = await generateIdentityLine(false);
  await assert.rejects(
    () => checkRecipients([a.recipient, "age1notarecipient"]),
    (err: Error) => {
      assert.ok(err instanceof BadRecipientError);
      assert.equal(err.recipient, "age1notarecipient");
      return true;
    },
  );
  await assert.rejects(
    () => checkRecipients([a.recipient.slice(0, -1) + (a.recipient.endsWith("q") ? "p" : "q")]),
    BadRecipientError,
  );
  assert.match(recipientFingerprint(a.recipient), /^SHA256:[0-9a-f]{16}$/);
  assert.equal(recipientFingerprint(a.recipient), recipientFingerprint(a.recipient));
});

test("rekey rewrites only the header: the payload bytes are the same, new recipients open it, removed ones do not", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const old = await generateIdentityLine(false);
    const added = await generateIdentityLine(true);
    const plain = bytesOf(3 * CHUNK_BYTES + 7);
    const file = path.join(dir, "b.tar.gz.age");
    await writeFile(file, await ourEncrypt(plain, [old.recipient]), { mode: 0o640 });
    const before = await readFile(file);
    const payloadBefore = before.subarray(before.indexOf("\n--- ") + 1);
    const payloadStart = (b: Buffer): number => b.indexOf(0x0a, b.indexOf("\n--- ") + 1) + 1;

    const r1 = await rekeyAgeFile(file, {
      identities: [old.identity],
      recipients: [added.recipient],
      keepExisting: true,
    });
    const mid = await readFile(file);
    assert.ok(
      mid.subarray(payloadStart(mid)).equals(before.subarray(payloadStart(before))),
      "payload untouched",
    );
    // The header had room: rewritten in place. With no record of the payload's hash, the one
    // read of the payload gives the new file's sha256.
    assert.equal(r1.in_place, true);
    assert.equal(r1.payload_read, true);
    assert.equal(r1.sha256, createHash("sha256").update(mid).digest("hex"));
    assert.equal(mid.length, before.length);
    assert.ok((await libDecrypt(mid, old.identity)).equals(plain));
    assert.ok((await libDecrypt(mid, added.identity)).equals(plain));
    assert.ok(payloadBefore.length > 0);

    await rekeyAgeFile(file, {
      identities: [added.identity],
      recipients: [added.recipient],
      keepExisting: false,
    });
    const after = await readFile(file);
    assert.ok(after.subarray(payloadStart(after)).equals(before.subarray(payloadStart(before))));
    assert.ok((await ourDecrypt(after, [added.identity])).equals(plain));
    await assert.rejects(ourDecrypt(after, [old.identity]), AgeIdentityError);
    assert.equal((await import("node:fs")).statSync(file).mode & 0o777, 0o640, "mode kept");

    // An identity that does not open it: nothing changes.
    const stranger = await generateIdentityLine(false);
    await assert.rejects(
      rekeyAgeFile(file, {
        identities: [stranger.identity],
        recipients: [stranger.recipient],
        keepExisting: true,
      }),
      AgeIdentityError,
    );
    assert.ok((await readFile(file)).equals(after));
  } finally {
    await cleanup();
  }
});

function ageCli(): string | undefined {
  const r = spawnSync("age", ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
const AGE_VERSION = ageCli();
const NO_AGE = AGE_VERSION
  ? false
  : "the age command is not installed (apt-get install age): interop with it not tested";
if (NO_AGE) process.stdout.write(`# skipped: ${NO_AGE}\n`);

test("the age command opens our files, and ours opens age's (X25519)", { skip: NO_AGE }, async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const a = await generateIdentityLine(false);
    const key = path.join(dir, "key.txt");
    await writeFile(key, `# created by the test\n${a.identity}\n`, { mode: 0o600 });
    const plain = bytesOf(CHUNK_BYTES * 2 + 5);
    const ours = path.join(dir, "ours.age");
    await pipeline(
      Readable.from([plain]),
      ageEncryptStream(await AgeEncryptor.create([a.recipient])),
      (await import("node:fs")).createWriteStream(ours),
    );
    const d = spawnSync("age", ["-d", "-i", key, ours], { maxBuffer: 1 << 24 });
    assert.equal(d.status, 0, String(d.stderr));
    assert.ok(Buffer.from(d.stdout).equals(plain));

    const theirs = path.join(dir, "theirs.age");
    const src = path.join(dir, "plain.bin");
    await writeFile(src, plain);
    const e = spawnSync("age", ["-r", a.recipient, "-o", theirs, src]);
    assert.equal(e.status, 0, String(e.stderr));
    assert.ok((await ourDecrypt(readFileSync(theirs), [a.identity])).equals(plain));

    // A header rewritten by rekey still opens with age.
    const b = await generateIdentityLine(false);
    const keyB = path.join(dir, "keyb.txt");
    await writeFile(keyB, `${b.identity}\n`, { mode: 0o600 });
    await rekeyAgeFile(theirs, { identities: [a.identity], recipients: [b.recipient], keepExisting: false });
    const d2 = spawnSync("age", ["-d", "-i", keyB, theirs], { maxBuffer: 1 << 24 });
    assert.equal(d2.status, 0, String(d2.stderr));
    assert.ok(Buffer.from(d2.stdout).equals(plain));
    assert.notEqual(
      spawnSync("age", ["-d", "-i", key, theirs]).status,
      0,
      "the removed identity no longer opens it",
    );

    // age's own header has no room: adding a recipient copies and reserves room; the next
    // addition fits in place, and age still opens the padded header (it ignores the filler).
    const more = [await generateIdentityLine(false), await generateIdentityLine(false)];
    const keys = [keyB];
    for (const [i, m] of more.entries()) {
      const k = path.join(dir, `key${i}.txt`);
      await writeFile(k, `${m.identity}\n`, { mode: 0o600 });
      keys.push(k);
      const sizeBefore = readFileSync(theirs).length;
      const r = await rekeyAgeFile(theirs, {
        identities: [b.identity],
        recipients: [m.recipient],
        keepExisting: true,
      });
      assert.equal(r.in_place, i === 1, `rekey ${i} in place`);
      assert.equal(readFileSync(theirs).length > sizeBefore, i === 0);
    }
    assert.match(readFileSync(theirs).subarray(0, 8192).toString("latin1"), /\n-> bernstein\.filler x+\n/);
    for (const k of keys) {
      const d3 = spawnSync("age", ["-d", "-i", k, theirs], { maxBuffer: 1 << 24 });
      assert.equal(d3.status, 0, String(d3.stderr));
      assert.ok(Buffer.from(d3.stdout).equals(plain));
    }
  } finally {
    await cleanup();
  }
});
