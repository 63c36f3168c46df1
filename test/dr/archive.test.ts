/**
 * Archive format, Fernet and the hostile-input defence, in process (the CLI tests run the binary).
 */
import assert from "node:assert/strict";
import { createDecipheriv, createHmac, pbkdf2Sync, timingSafeEqual } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { createGzip, gunzipSync } from "node:zlib";
import { UserError } from "../../src/errors/errors.js";
import { writeBackupArchive } from "../../src/dr/backup.js";
import {
  FernetDecryptor,
  FernetEncryptor,
  deriveKey,
  startKeyDerivation,
  type KeyCache,
} from "../../src/dr/fernet.js";
import { readArchive } from "../../src/dr/unpack.js";
import { PYTHON_REFERENCE, pythonReferenceFacts, scratchDir } from "../helpers.js";
import { archiveOf, gz, manifestFor, sha, tarEnd, tarEntry } from "./support/craft.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const REF = PYTHON_REFERENCE;
const expected = pythonReferenceFacts();

/** Independent Fernet decryption (node:crypto only, nothing from src/dr). */
function referenceDecrypt(file: Buffer, password: string): Buffer {
  const salt = file.subarray(0, 16);
  const token = Buffer.from(file.subarray(16).toString("ascii"), "base64url");
  const key = pbkdf2Sync(password, salt, 600_000, 32, "sha256");
  assert.equal(token[0], 0x80);
  const body = token.subarray(0, token.length - 32);
  const mac = createHmac("sha256", key.subarray(0, 16)).update(body).digest();
  assert.ok(timingSafeEqual(mac, token.subarray(token.length - 32)), "HMAC verifies");
  const d = createDecipheriv("aes-128-cbc", key.subarray(16), token.subarray(9, 25));
  return Buffer.concat([d.update(token.subarray(25, token.length - 32)), d.final()]);
}

function collect(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      parts.push(chunk);
      cb();
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

/**
 * The gzip of `parts` in turn (as `gz` of their concatenation), made as a stream, so that the
 * large runs of zeros below never sit in memory whole.
 */
async function gzipStream(parts: Iterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(parts).pipe(createGzip({ level: 6 }))) out.push(c as Buffer);
  return Buffer.concat(out);
}

/** `n` zero bytes as one reused 1 MiB chunk (and a shorter last one). */
function* zeros(n: number): Generator<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024);
  for (let left = n; left > 0; left -= chunk.length) yield chunk.subarray(0, Math.min(left, chunk.length));
}

async function expectArchiveError(
  buf: Buffer,
  code: number,
  pattern?: RegExp,
  password?: string,
  keyCache?: Map<string, Buffer>,
  expectSha256?: string,
) {
  await assert.rejects(
    readArchive(Readable.from([buf]), {}, { password, keyCache, expectSha256 }),
    (err: unknown) => {
      assert.ok(err instanceof UserError, `UserError expected, got ${String(err)}`);
      assert.equal(err.exitCode, code, err.message);
      if (pattern) assert.match(err.message, pattern);
      return true;
    },
  );
}

test("reads both Python reference archives: 15 regular files, hashes as the reference restores them", async () => {
  for (const [file, password] of [
    [expected.backups.plain.file, undefined],
    [expected.backups.encrypted.file, expected.backups.encrypted.password],
  ] as const) {
    const s = await readArchive(Readable.from([await readFile(path.join(REF, file))]), {}, { password });
    assert.equal(s.format, "reference");
    assert.equal(s.per_file_hashes, false);
    assert.equal(s.file_count, expected.backups.plain.reported_file_count);
    for (const [rel, want] of Object.entries(expected.restored_files_sha256)) {
      // manifest.json differs between the two (created_at); the rest is the same state.
      if (rel !== "manifest.json") assert.equal(s.file_hashes.get(rel), want, rel);
    }
    assert.deepEqual([...s.file_hashes.keys()].sort(), Object.keys(expected.restored_files_sha256).sort());
  }
});

test("our Fernet stream matches an independent decryption, and decrypts the reference's token", async () => {
  const password = "pw ✓";
  const enc = await FernetEncryptor.create(password);
  const plain = Buffer.alloc(100_003, 7);
  const out = Buffer.concat([
    enc.update(plain.subarray(0, 5)),
    enc.update(plain.subarray(5, 70_000)),
    enc.update(plain.subarray(70_000)),
    enc.final(),
  ]);
  assert.match(out.subarray(16).toString("ascii"), /^[A-Za-z0-9_-]+={0,2}$/);
  assert.deepEqual(referenceDecrypt(out, password), plain);

  const ref = await readFile(path.join(REF, expected.backups.encrypted.file));
  const dec = new FernetDecryptor(expected.backups.encrypted.password);
  const parts: Buffer[] = [];
  for (let i = 0; i < ref.length; i += 333) parts.push(await dec.update(ref.subarray(i, i + 333)));
  parts.push(dec.final());
  assert.deepEqual(Buffer.concat(parts), referenceDecrypt(ref, expected.backups.encrypted.password));
  // A different password gives a different key (sanity of the derivation).
  assert.notDeepEqual(await deriveKey("a", Buffer.alloc(16)), await deriveKey("b", Buffer.alloc(16)));

  // A derivation started from the file's first bytes is the one the decryptor then uses.
  const cache: KeyCache = new Map();
  startKeyDerivation(plain.subarray(0, 22), password, cache);
  assert.equal(cache.size, 0, "not an encrypted archive: nothing to derive");
  startKeyDerivation(out.subarray(0, 22), password, cache);
  startKeyDerivation(out.subarray(0, 22), password, cache);
  assert.equal(cache.size, 1);
  const early = await [...cache.values()][0];
  assert.deepEqual(early, await deriveKey(password, out.subarray(0, 16)));
  // The decryptor takes its key from there: a wrong key in its place fails authentication.
  const [id] = cache.keys();
  cache.set(id!, Promise.resolve(Buffer.alloc(32)));
  const fooled = new FernetDecryptor(password, cache);
  await fooled.update(out);
  assert.throws(() => fooled.final(), /authentication failed/);
});

test("Fernet decryption: any split of the input, the HMAC across chunks, and only the base64url alphabet", async () => {
  const password = "pw";
  const cache = new Map<string, Buffer>();
  const enc = new FernetEncryptor(await deriveKey(password, Buffer.alloc(16, 1)), Buffer.alloc(16, 1));
  const plain = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) % 251));
  const file = Buffer.concat([enc.update(plain), enc.final()]);
  const decryptIn = async (input: Buffer, sizes: () => number): Promise<Buffer> => {
    const dec = new FernetDecryptor(password, cache);
    const parts: Buffer[] = [];
    for (let i = 0; i < input.length;) {
      const n = sizes();
      parts.push(await dec.update(input.subarray(i, i + n)));
      i += n;
    }
    parts.push(dec.final());
    return Buffer.concat(parts);
  };
  // Chunks smaller than the HMAC, at the start, in the middle and over the token's end.
  let seed = 7;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 97) + 1;
  for (const sizes of [() => 1, () => 5, () => 43, () => 44, random, () => 4096]) {
    assert.deepEqual(await decryptIn(file, sizes), plain);
  }
  const flipped = Buffer.from(file);
  flipped[file.length - 10] = flipped[file.length - 10] === 0x41 ? 0x42 : 0x41;
  await assert.rejects(decryptIn(flipped, random), /authentication failed/);
  // Characters outside base64url, including the standard alphabet's '+' and '/' (the same
  // bits to a lenient decoder, so a flip to them would otherwise go unseen), and whitespace.
  for (const ch of ["+", "/", " ", "\n", "!", "\u00e9", "="]) {
    for (const at of [16 + 8, Math.floor(file.length / 2), file.length - 8]) {
      const bad = Buffer.concat([file.subarray(0, at), Buffer.from(ch, "latin1"), file.subarray(at + 1)]);
      for (const sizes of [() => 4096, () => 64, random]) {
        await assert.rejects(decryptIn(bad, sizes), (err: Error) => {
          assert.ok(
            err.name === "FernetFormatError" || err.name === "FernetAuthError",
            `${ch}@${at}: ${err.message}`,
          );
          return true;
        });
      }
    }
  }
});

test("our archives are what the Python restore reads: gzip tar, manifest.json first; salt + Fernet token", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const plain = collect();
    const r = await writeBackupArchive(ws, plain.sink);
    const listing = execFileSync("tar", ["-tzf", "-"], { input: plain.bytes() })
      .toString()
      .trim()
      .split("\n");
    assert.equal(listing[0], "manifest.json");
    assert.ok(listing.includes("backlog/claimed/T-2.md") && listing.includes("backlog/failed/T-3.md"));
    assert.ok(!listing.some((l) => l.startsWith("logs/") || l.includes("heartbeats/a.json")));
    const regular = execFileSync("tar", ["-tvzf", "-"], { input: plain.bytes() })
      .toString()
      .split("\n")
      .filter((l) => l.startsWith("-"));
    assert.equal(regular.length, r.file_count);
    const manifest = JSON.parse(
      execFileSync("tar", ["-xzOf", "-", "manifest.json"], { input: plain.bytes() }).toString(),
    );
    for (const field of ["created_at", "included_dirs", "excluded_dirs", "excluded_patterns"])
      assert.ok(field in manifest, field);
    assert.equal(manifest.file_count, r.file_count);
    assert.equal(r.sha256, sha(plain.bytes()));

    const enc = collect();
    const e = await writeBackupArchive(ws, enc.sink, { password: "s3cret", auditKeyPath: keyFile });
    const targz = referenceDecrypt(enc.bytes(), "s3cret");
    const encListing = execFileSync("tar", ["-tzf", "-"], { input: targz }).toString().trim().split("\n");
    assert.equal(encListing[0], "manifest.json");
    assert.ok(encListing.includes("secrets/audit.key"), "encrypted backups carry the audit key");
    assert.equal(e.file_count, r.file_count + 1);
    assert.ok(gunzipSync(targz).length > 0);

    // The real thing where it is installed: Python's tarfile (multi-member gzip, FEXTRA) and
    // cryptography's Fernet, as the reference restore uses them.
    if (pythonHas("cryptography")) {
      const plainFile = path.join(dir, "plain.tar.gz");
      const encFile = path.join(dir, "enc.tar.gz.enc");
      await writeFile(plainFile, plain.bytes());
      await writeFile(encFile, enc.bytes());
      const out = execFileSync("python3", ["-c", PY_RESTORE, plainFile, encFile, "s3cret"]).toString();
      const [plainCount, encCount, plainSample] = out.trim().split("\n");
      assert.equal(Number(plainCount), r.file_count);
      assert.equal(Number(encCount), e.file_count);
      const sample = r.manifest.files.find((f) => f.path === plainSample)!;
      assert.ok(sample, `python extracted ${plainSample}`);
    }
  } finally {
    await cleanup();
  }
});

/** What the Python reference's restore does with an archive: Fernet, then tarfile r:gz. */
const PY_RESTORE = `
import base64, hashlib, io, sys, tarfile
from cryptography.fernet import Fernet
plain, enc, pw = sys.argv[1:4]
def regular(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        members = [m for m in t.getmembers() if m.isfile()]
        for m in members:
            t.extractfile(m).read()
        return members
p = regular(open(plain, "rb").read())
raw = open(enc, "rb").read()
key = hashlib.pbkdf2_hmac("sha256", pw.encode(), raw[:16], 600000, 32)
e = regular(Fernet(base64.urlsafe_b64encode(key)).decrypt(raw[16:]))
print(len(p)); print(len(e)); print(p[-1].name)
`;

function pythonHas(module: string): boolean {
  try {
    execFileSync("python3", ["-c", `import ${module}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

test("hostile entries are refused (exit 5) before anything is handed on", async () => {
  const ok = { path: "docs/a.md", data: Buffer.from("a\n") };
  const cases: [string, Buffer][] = [
    ["absolute", archiveOf([ok], { extra: [tarEntry({ path: "/etc/x", data: Buffer.from("x") })] })],
    ["dotdot", archiveOf([ok], { extra: [tarEntry({ path: "docs/../../x", data: Buffer.from("x") })] })],
    [
      "symlink",
      archiveOf([ok], {
        extra: [tarEntry({ path: "docs/l", type: "SymbolicLink", linkpath: "/etc/passwd" })],
      }),
    ],
    [
      "symlink-inside",
      archiveOf([ok], { extra: [tarEntry({ path: "docs/l2", type: "SymbolicLink", linkpath: "a.md" })] }),
    ],
    [
      "hardlink",
      archiveOf([ok], { extra: [tarEntry({ path: "docs/h", type: "Link", linkpath: "docs/a.md" })] }),
    ],
    ["chardev", archiveOf([ok], { extra: [tarEntry({ path: "docs/null", type: "CharacterDevice" })] })],
    ["blockdev", archiveOf([ok], { extra: [tarEntry({ path: "docs/sda", type: "BlockDevice" })] })],
    ["fifo", archiveOf([ok], { extra: [tarEntry({ path: "docs/fifo", type: "FIFO" })] })],
    ["duplicate", archiveOf([ok], { extra: [tarEntry({ path: "docs/a.md", data: Buffer.from("a\n") })] })],
    [
      "normalization",
      archiveOf([{ path: "docs/caf\u00e9.md", data: Buffer.from("1") }], {
        extra: [tarEntry({ path: "docs/cafe\u0301.md", data: Buffer.from("1") })],
      }),
    ],
    ["below-a-file", archiveOf([ok], { extra: [tarEntry({ path: "docs/a.md/x", data: Buffer.from("x") })] })],
    // Longer than Linux's PATH_MAX or NAME_MAX: refused as hostile, not failed on as an I/O error.
    [
      "long-name",
      archiveOf([ok], {
        extra: [tarEntry({ path: "docs/" + "d/".repeat(2100) + "x", data: Buffer.from("x") })],
      }),
    ],
    [
      "long-component",
      archiveOf([ok], {
        extra: [tarEntry({ path: "docs/" + "\u00e9".repeat(128), data: Buffer.from("x") })],
      }),
    ],
  ];
  for (const [name, buf] of cases) {
    const handedOn: string[] = [];
    const handler = {
      file: (e: { path: string }) => void handedOn.push(e.path),
      dir: (e: { path: string }) => void handedOn.push(e.path),
    };
    await assert.rejects(readArchive(Readable.from([buf]), handler), (err: unknown) => {
      assert.deepEqual(
        handedOn.filter((p) => p !== "docs/a.md" && p !== "docs/caf\u00e9.md"),
        [],
        `${name}: the hostile entry was handed on`,
      );
      assert.ok(err instanceof UserError, name);
      assert.equal(err.exitCode, 5, `${name}: ${err.message}`);
      return true;
    });
  }
  // The same hostile names also fail in a Python-layout archive (no manifest first).
  await expectArchiveError(
    gz(Buffer.concat([tarEntry({ path: "../x", data: Buffer.from("x") }), tarEnd()])),
    5,
    /'\.\.'/,
  );
});

test("an archive whose files do not match its manifest, or expands past it, is refused", async () => {
  const a = { path: "docs/a.md", data: Buffer.from("hello\n") };
  const wrongContent = archiveOf([{ path: a.path, data: Buffer.from("HELLO\n") }], {
    manifest: manifestFor([a]),
  });
  await expectArchiveError(wrongContent, 5, /does not match its manifest/);
  const missing = archiveOf([], { manifest: manifestFor([a]) });
  await expectArchiveError(missing, 5, /missing/);
  const notListed = archiveOf([a], { manifest: manifestFor([]) });
  await expectArchiveError(notListed, 5, /not in its manifest/);
  // Decompression bomb: 64 MB of zeros where the manifest promises 6 bytes.
  const bomb = await gzipStream([
    tarEntry({ path: "manifest.json", data: manifestFor([a]) }),
    tarEntry({ path: a.path, size: 64 * 1024 * 1024 }),
    ...zeros(64 * 1024 * 1024),
    tarEnd(),
  ]);
  assert.ok(bomb.length < 200_000);
  await expectArchiveError(bomb, 5, /expands past/);
  // Trailing zeros are tolerated only as zeros: data after the end marker is corruption.
  const tail = await gzipStream([
    tarEntry({ path: "manifest.json", data: manifestFor([a]) }),
    tarEntry({ path: a.path, data: a.data }),
    tarEnd(),
    ...zeros(100 * 1024 * 1024),
  ]);
  await expectArchiveError(tail, 5, /expands past|after the end/);
});

test("not an archive, truncated, and every single flipped byte of a plain and an encrypted archive are refused", async () => {
  await expectArchiveError(
    Buffer.from("just some text that is not an archive at all"),
    5,
    /not a backup archive/,
  );
  // A damaged numeric field that node-tar's header parser throws on (base-256 size too large):
  // a corrupt archive (exit 5), not an internal error.
  const entry = tarEntry({ path: "docs/a.md", data: Buffer.from("a\n") });
  entry.fill(0xff, 124, 136);
  entry[124] = 0x80;
  await expectArchiveError(gz(Buffer.concat([entry, tarEnd()])), 5, /bad tar header at entry 1/);
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await makeSmallWorkspace(dir, { entries: 3, bigBytes: 10 });
    const plain = collect();
    await writeBackupArchive(ws, plain.sink);
    const p = plain.bytes();
    for (const cut of [1, 10, 100, Math.floor(p.length / 2), p.length - 1])
      await expectArchiveError(p.subarray(0, cut), 5);
    // The seal (seal.ts) closes what gzip cannot see (deflate streams that decode to the same
    // bytes): every single changed byte, in any bit, is refused by the archive itself.
    for (let i = 0; i < p.length; i++) {
      for (const bits of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(p);
        bad[i] ^= bits;
        await expectArchiveError(bad, 5);
      }
    }
    const good = await readArchive(Readable.from([p]), {});
    // An archive of the Python reference has no seal: a recorded sha256 is what refuses it.
    await expectArchiveError(p, 5, /damaged or altered: its sha256 is/, undefined, undefined, "0".repeat(64));
    assert.equal(good.sha256, sha(p));

    const enc = collect();
    await writeBackupArchive(ws, enc.sink, { password: "pw" });
    const e = enc.bytes();
    const eSha = sha(e);
    const cache = new Map<string, Buffer>();
    await expectArchiveError(
      e,
      4,
      /wrong password, or the archive's first 71 bytes/,
      "not the password",
      cache,
    );
    // With the recorded sha256 (the .sha256 sidecar) a wrong password is certain.
    await expectArchiveError(e, 4, /wrong password \(the archive is intact/, "not the password", cache, eSha);
    for (const cut of [5, 40, Math.floor(e.length / 2), e.length - 4, e.length - 1])
      await expectArchiveError(e.subarray(0, cut), 5, undefined, "pw", cache);
    // Every byte. The salt, the IV and the first cipher block decide what the first plaintext
    // block is: without a recorded sha256, damage there cannot be told from a wrong password
    // (exit 4, the message says both). Everything after (file offset 71 on) decrypts with the
    // right password and fails authentication: exit 5. With the sha256, every flip is exit 5.
    for (let i = 0; i < e.length; i++) {
      const bad = Buffer.from(e);
      bad[i] ^= 0x01;
      await assert.rejects(
        readArchive(Readable.from([bad]), {}, { password: "pw", keyCache: cache }),
        (err: unknown) => {
          assert.ok(err instanceof UserError);
          if (i >= 71) assert.equal(err.exitCode, 5, `offset ${i}: ${err.message}`);
          else
            assert.ok(
              err.exitCode === 5 || (err.exitCode === 4 && /damaged/.test(err.message)),
              `offset ${i}: ${err.message}`,
            );
          return true;
        },
      );
      await expectArchiveError(bad, 5, undefined, "pw", cache, eSha);
    }
  } finally {
    await cleanup();
  }
});
