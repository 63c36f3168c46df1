/**
 * Keys worked out ahead of a read (keys-ahead.ts): the peek at a stream's first bytes changes
 * nothing the reader then reads, whatever the stream's chunks; an unwrap started ahead neither
 * keeps an abandoned process from ending nor lets it end while a reader awaits the key, and a
 * failure ahead is reported by the reader, never as an unhandled rejection.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { AgeEncryptor } from "../../src/dr/age/encrypt.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import type { KeyCache } from "../../src/dr/fernet.js";
import { startKeysAhead } from "../../src/dr/keys-ahead.js";
import { scratchDir, withSeed } from "../helpers.js";

/** `bytes` cut into chunks of random sizes from `rand` (1 byte up to `max`). */
function chunked(bytes: Buffer, rand: () => number, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = 1 + Math.floor(rand() * max);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

test("the peek at a stream's first bytes leaves every byte to the reader, in any chunking", async () => {
  const a = await generateIdentityLine(false);
  const enc = await AgeEncryptor.create([a.recipient]);
  const file = Buffer.concat([...enc.update(Buffer.alloc(100_000, 7)), ...enc.final()]);
  const headerEnd = file.indexOf("\n--- ") + 1 + file.subarray(file.indexOf("\n--- ") + 1).indexOf("\n") + 1;
  await withSeed("KEYS_AHEAD_SEED", async (rand) => {
    const cases: { name: string; bytes: Buffer; started: boolean }[] = [
      { name: "age file", bytes: file, started: true },
      { name: "header only", bytes: file.subarray(0, headerEnd), started: true },
      { name: "cut inside the header", bytes: file.subarray(0, headerEnd - 10), started: false },
      { name: "empty", bytes: Buffer.alloc(0), started: false },
      { name: "not age", bytes: Buffer.alloc(70_000, 1), started: false },
    ];
    for (const c of cases)
      for (const max of [1, 100, 5000, 1 << 20]) {
        const chunks = chunked(c.bytes, rand, max);
        const cache: KeyCache = new Map();
        const stream = Readable.from(chunks, { objectMode: false });
        await startKeysAhead(stream, { identities: [a.identity] }, cache);
        const read = Buffer.concat(await stream.toArray());
        assert.ok(read.equals(c.bytes), `${c.name}, chunks up to ${max}: the reader read other bytes`);
        assert.equal(cache.size, c.started ? 1 : 0, `${c.name}, chunks up to ${max}`);
        if (c.started) assert.ok((await [...cache.values()][0]!).equals(enc.fileKey));
      }
  });
});

test("a stream that fails before its first byte: nothing started, the reader gets the failure", async () => {
  const stream = new Readable({
    read() {
      this.destroy(new Error("the disk went away"));
    },
  });
  const cache: KeyCache = new Map();
  await startKeysAhead(stream, { identities: ["AGE-SECRET-KEY-1X"], password: "p" }, cache);
  assert.equal(cache.size, 0);
  await assert.rejects(stream.toArray(), /the disk went away/);
});

test("an unwrap ahead that fails, or that nobody takes, lets the process end; one awaited keeps it alive", async () => {
  const a = await generateIdentityLine(true);
  const other = await generateIdentityLine(false);
  const enc = await AgeEncryptor.create([a.recipient]);
  const file = Buffer.concat([...enc.update(Buffer.alloc(1000, 3)), ...enc.final()]);
  const altered = Buffer.from(file);
  const mac = altered.indexOf("\n--- ") + 6;
  altered[mac] = altered[mac] === 0x41 ? 0x42 : 0x41;
  const { dir, cleanup } = await scratchDir();
  try {
    const good = path.join(dir, "good.tar.gz.age");
    const bad = path.join(dir, "altered.tar.gz.age");
    await writeFile(good, file);
    await writeFile(bad, altered);
    const child = path.join(import.meta.dirname, "support", "keys-ahead-child.js");
    const run = (...args: string[]): { code: number | null; stdout: string; stderr: string } => {
      // The bound only keeps a hung child from hanging the suite; ending on its own is the check.
      const r = spawnSync(process.execPath, [child, ...args], { encoding: "utf8", timeout: 120_000 });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    for (const [file, id] of [
      [good, a.identity],
      [good, other.identity],
      [bad, a.identity],
    ] as const) {
      const r = run("abandon", file, id);
      assert.deepEqual(r, { code: 0, stdout: "", stderr: "" }, `abandoned ${path.basename(file)}`);
    }
    assert.deepEqual(run("read", good, a.identity), { code: 0, stdout: "opened\n", stderr: "" });
    assert.deepEqual(run("read", good, other.identity), {
      code: 0,
      stdout:
        "AgeIdentityError: none of the 1 identities opens this archive; it is encrypted to recipients 1 mlkem768x25519 stanza\n",
      stderr: "",
    });
    assert.deepEqual(run("read", bad, a.identity), {
      code: 0,
      stdout: "AgeFormatError: the header was altered: its MAC does not match\n",
      stderr: "",
    });
  } finally {
    await cleanup();
  }
});
