/**
 * Library callers that read many failing archives in one process (a verification service, a
 * scheduler). An encrypted archive that fails at its very end used to leave the tar loop running
 * into the staging writer after the read had failed: that late call unref'd the worker while the
 * caller was terminating it, so the process could exit (or a server hang) with a verify or
 * restore still pending, and its temp folder, holding the decrypted workspace, left behind.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import { backupToFile } from "../../src/dr/backup.js";
import type { KeyCache } from "../../src/dr/fernet.js";
import { restoreFromFile } from "../../src/dr/restore.js";
import type { EntryInfo } from "../../src/dr/tar-reader.js";
import { readArchive } from "../../src/dr/unpack.js";
import { verifyArchiveFile } from "../../src/dr/verify.js";
import { scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

/** An encrypted backup of a small workspace whose last base64 character is wrong (HMAC fails). */
async function failingArchive(dir: string): Promise<string> {
  const { ws } = await makeSmallWorkspace(dir);
  const b = await backupToFile(ws, path.join(dir, "b.tar.gz"), { password: "pw", sidecar: false });
  const bytes = await readFile(b.path);
  // The last character before the padding: still base64, so the token decodes and its HMAC fails.
  let i = bytes.length - 1;
  while (bytes[i] === 0x3d) i--;
  bytes[i] = bytes[i] === 0x41 ? 0x42 : 0x41;
  const bad = path.join(dir, "bad.tar.gz.enc");
  await writeFile(bad, bytes);
  return bad;
}

test("readArchive does not settle while its handler is still being called: a failure at the end waits for the tar loop to stop", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const bytes = await readFile(await failingArchive(dir));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let blocked!: () => void;
    const handlerBlocked = new Promise<void>((r) => (blocked = r));
    let settled = false;
    let inHandler = 0;
    const lateCalls: string[] = [];
    let first = true;
    // The source hands out 16 KiB chunks. The last one comes once the tar loop is stuck in the
    // handler; the handler is let go on the next turn of the event loop, after everything the
    // read does with that last chunk (it fails at its end) has happened.
    async function* source(): AsyncGenerator<Buffer> {
      for (let off = 0; off < bytes.length; off += 16 * 1024) {
        if (off + 16 * 1024 >= bytes.length) {
          await handlerBlocked;
          setImmediate(release);
        }
        yield bytes.subarray(off, off + 16 * 1024);
      }
    }
    const handler = {
      file: (entry: EntryInfo) => {
        if (settled) lateCalls.push(entry.path);
        if (!first) return undefined;
        first = false;
        // A slow disk: the first file is written only when released.
        inHandler++;
        blocked();
        return released.then(() => {
          inHandler--;
          return undefined;
        });
      },
    };
    const err = await readArchive(source(), handler, { password: "pw" }).then(
      () => assert.fail("the archive must fail"),
      (e: unknown) => e,
    );
    settled = true;
    assert.ok(err instanceof UserError, String(err));
    assert.equal(err.exitCode, 5, err.message);
    assert.equal(inHandler, 0, "readArchive failed while a handler call was still in progress");
    // Whatever was left of the tar loop would run now: nothing may reach the handler any more.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(lateCalls, []);
  } finally {
    await cleanup();
  }
});

test("50 failing verifies and 50 failing restores of an encrypted archive in one process: each fails (exit 5), nothing left behind", async () => {
  const { dir, cleanup } = await scratchDir();
  const tmp = path.join(dir, "tmp");
  await mkdir(tmp);
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp; // verify's temp folders go here (os.tmpdir())
  try {
    const bad = await failingArchive(dir);
    const keyCache: KeyCache = new Map(); // one PBKDF2, not a hundred
    const target = path.join(dir, "restored", ".sdd");
    for (let i = 0; i < 50; i++) {
      const v = await verifyArchiveFile(bad, { password: "pw", keyCache }).then(
        () => assert.fail("verify must fail"),
        (e: unknown) => e,
      );
      assert.ok(v instanceof UserError && v.exitCode === 5, `verify ${i}: ${String(v)}`);
      assert.deepEqual(readdirSync(tmp), [], `verify ${i} left its temp folder`);
    }
    for (let i = 0; i < 50; i++) {
      const r = await restoreFromFile(bad, target, { password: "pw", keyCache }).then(
        () => assert.fail("restore must fail"),
        (e: unknown) => e,
      );
      assert.ok(r instanceof UserError && r.exitCode === 5, `restore ${i}: ${String(r)}`);
      assert.equal(existsSync(target), false);
      // The folder made for the target goes too, with the staging folder inside it.
      assert.equal(existsSync(path.dirname(target)), false, `restore ${i} left its staging folder`);
    }
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await cleanup();
  }
});
