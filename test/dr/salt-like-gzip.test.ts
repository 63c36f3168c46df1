/**
 * A password-encrypted archive is `salt || Fernet token`, and the salt is random: one archive in
 * 65,536 begins with gzip's magic bytes. Such an archive is still an encrypted one: restore,
 * verify and the dry run open it with its password (they took it for a damaged gzip, exit 5).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { FernetEncryptor, SALT_BYTES, deriveKey } from "../../src/dr/fernet.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("an encrypted archive whose random salt starts with gzip's magic is opened as the encrypted archive it is", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = { ...envFor(dir), BERNSTEIN_DR_PASSWORD: "pw" };
    const { ws } = await makeSmallWorkspace(dir);
    const plain = await backupToFile(ws, path.join(dir, "b.tar.gz"));
    // The salt a 1-in-65,536 backup draws: gzip's two magic bytes (and its method byte) first.
    const salt = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08]), randomBytes(SALT_BYTES - 3)]);
    const enc = new FernetEncryptor(await deriveKey("pw", salt), salt);
    const archive = path.join(dir, "salty.tar.gz.enc");
    await writeFile(archive, Buffer.concat([enc.update(await readFile(plain.path)), enc.final()]));

    for (const args of [
      ["dr", "verify", "--from", archive],
      ["--sdd", path.join(dir, "dry", ".sdd"), "dr", "restore", "--from", archive, "--dry-run"],
      ["--sdd", path.join(dir, "r", ".sdd"), "dr", "restore", "--from", archive],
    ]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    }
    const wrong = await runCli(["dr", "verify", "--from", archive], {
      env: { ...env, BERNSTEIN_DR_PASSWORD: "nope" },
    });
    assert.equal(wrong.code, 4, wrong.stderr);
  } finally {
    await cleanup();
  }
});
