/**
 * Backups encrypted to age recipients, at the library level: backupToFile → `.tar.gz.age`,
 * restored and verified with identities; the audit key travels as in `.enc`; the bad inputs of
 * issue 17 give their exit codes; the `age` command reads ours and writes what we restore.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { restoreFromFile } from "../../src/dr/restore.js";
import { verifyArchiveFile } from "../../src/dr/verify.js";
import { ExitCode, UserError } from "../../src/errors/errors.js";
import { scratchDir } from "../helpers.js";
import { ageDamageCases } from "./support/damage.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const AGE_OK = spawnSync("age", ["--version"]).status === 0;
const NO_AGE = AGE_OK
  ? false
  : "the age command is not installed (apt-get install age): interop with it not tested";
if (NO_AGE) process.stdout.write(`# skipped: ${NO_AGE}\n`);

const exitCode = (code: number, pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof UserError, String(err));
  assert.equal(err.exitCode, code, err.message);
  assert.match(err.message, pattern);
  return true;
};

test("a backup to an X25519 and a hybrid recipient is NAME.tar.gz.age, restores and verifies with either identity, carries the audit key", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const x = await generateIdentityLine(false);
    const pq = await generateIdentityLine(true);
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), {
      recipients: [x.recipient, pq.recipient],
      auditKeyPath: keyFile,
    });
    assert.equal(b.path, path.join(dir, "bk.tar.gz.age"));
    assert.equal(b.encrypted, true);
    assert.equal(b.manifest.audit_key_included, true);
    const bytes = await readFile(b.path);
    assert.equal(bytes.subarray(0, 22).toString(), "age-encryption.org/v1\n");
    assert.match(readFileSync(`${b.path}.sha256`, "utf8"), /^[0-9a-f]{64} {2}bk\.tar\.gz\.age\n$/);

    const r = await restoreFromFile(b.path, path.join(dir, "r1", ".sdd"), {
      identities: [pq.identity],
      auditKeyPath: path.join(dir, "r1key", "audit.key"),
    });
    assert.equal(r.encrypted, true);
    assert.equal(r.file_count, b.file_count);
    assert.equal(r.audit_key.action, "installed");
    assert.equal(
      await readFile(path.join(dir, "r1key", "audit.key"), "utf8"),
      await readFile(keyFile, "utf8"),
    );
    const v = await verifyArchiveFile(b.path, { identities: [x.identity] });
    assert.equal(v.ok, true, JSON.stringify(v));
  } finally {
    await cleanup();
  }
});

test("wrong identity exit 4 naming the stanzas; a password for .age and an identity for .enc get a hint (exit 2); altered header or chunk and truncation exit 5", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 300_000 });
    const a = await generateIdentityLine(false);
    const other = await generateIdentityLine(false);
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { recipients: [a.recipient] });
    const target = path.join(dir, "r", ".sdd");
    await assert.rejects(
      restoreFromFile(b.path, target, { identities: [other.identity] }),
      exitCode(
        ExitCode.BAD_PASSWORD,
        /none of the 1 identities opens this archive; it is encrypted to recipients 1 X25519 stanza/,
      ),
    );
    await assert.rejects(
      restoreFromFile(b.path, target, { password: "pw" }),
      exitCode(ExitCode.USAGE, /encrypted to age recipients, not with a password: pass --identity-file/),
    );
    const enc = await backupToFile(ws, path.join(dir, "pw.tar.gz"), { password: "pw" });
    await assert.rejects(
      restoreFromFile(enc.path, target, { identities: [a.identity] }),
      exitCode(
        ExitCode.USAGE,
        /encrypted with a password \(Fernet\), not to age recipients: pass --password-file/,
      ),
    );

    const good = await readFile(b.path);
    const damaged = path.join(dir, "damaged.tar.gz.age");
    for (const [what, bytes] of ageDamageCases(good)) {
      await writeFile(damaged, bytes);
      await assert.rejects(
        restoreFromFile(damaged, target, { identities: [a.identity] }),
        exitCode(ExitCode.CORRUPT, /damaged/),
        what,
      );
    }
    // A stanza altered: alone it looks like a wrong identity; the recorded sha256 says damage.
    // (another base64 letter: a flipped bit could leave the alphabet, which is "malformed", exit 5)
    const stanzaFlip = Buffer.from(good);
    const at = good.indexOf("\n", 30) + 5;
    stanzaFlip[at] = good[at] === 0x41 ? 0x42 : 0x41;
    await writeFile(damaged, stanzaFlip);
    await assert.rejects(
      restoreFromFile(damaged, target, { identities: [a.identity] }),
      exitCode(ExitCode.BAD_PASSWORD, /identities/),
    );
    await assert.rejects(
      restoreFromFile(damaged, target, {
        identities: [a.identity],
        expectSha256: b.sha256,
        expectSha256From: "--sha256",
      }),
      exitCode(ExitCode.CORRUPT, /sha256 is/),
    );
  } finally {
    await cleanup();
  }
});

test(
  "`age -d -i key | tar tz` lists our archive; an archive `age -r` encrypted from a plain backup restores with ours",
  { skip: NO_AGE },
  async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const { ws } = await makeSmallWorkspace(dir);
      const a = await generateIdentityLine(false);
      const key = path.join(dir, "key.txt");
      await writeFile(key, `${a.identity}\n`, { mode: 0o600 });
      const ours = await backupToFile(ws, path.join(dir, "ours.tar.gz"), { recipients: [a.recipient] });
      const listed = spawnSync("sh", ["-c", `age -d -i "${key}" "${ours.path}" | tar tz`], {
        encoding: "utf8",
      });
      assert.equal(listed.status, 0, listed.stderr);
      assert.equal(listed.stdout.split("\n")[0], "manifest.json");
      assert.equal(
        listed.stdout
          .trim()
          .split("\n")
          .filter((l) => !l.endsWith("/")).length,
        ours.file_count,
      );

      const plain = await backupToFile(ws, path.join(dir, "plain.tar.gz"));
      const theirs = path.join(dir, "x.tar.gz.age");
      const e = spawnSync("age", ["-r", a.recipient, "-o", theirs, plain.path], { encoding: "utf8" });
      assert.equal(e.status, 0, e.stderr);
      const r = await restoreFromFile(theirs, path.join(dir, "r", ".sdd"), { identities: [a.identity] });
      assert.equal(r.file_count, plain.file_count);
      // Its manifest says plain: the key was left out on purpose (not "its workspace had none").
      assert.equal(r.audit_key.message, "this backup carries no audit key (plain backups leave it out)");
    } finally {
      await cleanup();
    }
  },
);
