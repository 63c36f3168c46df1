/**
 * `bernstein key generate|recipient` and `bernstein dr rekey` as a user runs them: files and
 * modes, exit codes of bad input, header-only rotation checked with our restore and (when
 * installed) the `age` command, .enc archives re-encrypted and converted, `--all` resuming.
 * `key generate` runs as a real process in the first case; the later cases, where keys are only
 * the means, make theirs by main() in this process.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { readBackupLog } from "../../src/dr/backup-log.js";
import { restoreFromFile } from "../../src/dr/restore.js";
import { envFor, runCli, runMain, scratchDir } from "../helpers.js";
import { catalogueBackup } from "./support/catalogue.js";
import { identityOf, keyPair } from "./support/age-keys.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("key generate writes a 0600 identity (X25519 or hybrid) and prints its recipient; key recipient reads it back; bad files are refused", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const x = await keyPair(dir, "x.txt");
    const pq = await keyPair(dir, "pq.txt", true);
    assert.match(x.recipient, /^age1[0-9a-z]{58}$/);
    assert.match(pq.recipient, /^age1pq1[0-9a-z]+$/);
    assert.equal(statSync(x.file).mode & 0o777, 0o600);
    assert.match(
      await readFile(pq.file, "utf8"),
      /^# created: .*\n# public key: age1pq1.*\nAGE-SECRET-KEY-PQ-1[0-9A-Z]+\n$/,
    );

    const again = await runCli(["key", "generate", "-o", x.file], { env });
    assert.equal(again.code, 6, "an existing identity is never replaced");
    assert.match(again.stderr, /already exists/);
    // Where the identity goes is a destination: exit 6, as the table of exit codes has it (was 2).
    const missing = path.join(dir, "nodir", "k.txt");
    const noFolder = await runCli(["key", "generate", "-o", missing], { env });
    assert.equal(noFolder.code, 6, noFolder.stderr);
    assert.equal(
      noFolder.stderr,
      `bernstein: cannot write ${missing}: folder ${path.dirname(missing)} does not exist\n`,
    );
    if (existsSync("/proc/self")) {
      const refused = await runMain(["key", "generate", "-o", "/proc/k.txt"], { env });
      assert.equal(refused.code, 6, refused.stderr);
    }

    const both = path.join(dir, "both.txt");
    await writeFile(both, `# two\n${await identityOf(x.file)}\n\n${await identityOf(pq.file)}\n`, {
      mode: 0o600,
    });
    const rec = await runCli(["key", "recipient", both, "--json"], { env });
    assert.equal(rec.code, 0, rec.stderr);
    const doc = JSON.parse(rec.stdout);
    assert.deepEqual(
      doc.recipients.map((r: { recipient: string }) => r.recipient),
      [x.recipient, pq.recipient],
    );
    assert.match(doc.recipients[0].fingerprint, /^SHA256:[0-9a-f]{16}$/);

    await chmod(both, 0o640);
    const open = await runCli(["key", "recipient", both], { env });
    assert.equal(open.code, 2);
    assert.equal(open.stderr.trim().split("\n").length, 1);
    assert.match(open.stderr, /readable by group or others \(mode 640\); run: chmod 600/);
    await chmod(both, 0o600);
    await writeFile(both, "AGE-SECRET-KEY-1NOTAKEY\n");
    const bad = await runCli(["key", "recipient", both], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /line 1 is not an age identity/);
    assert.doesNotMatch(bad.stderr, /NOTAKEY/, "a secret line is never echoed");
  } finally {
    await cleanup();
  }
});

test("dr rekey: add, remove (through the catalogue's recipients), wrong identity 4 with nothing changed, malformed recipient 2; the payload bytes never change", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt", false, "main");
    const c = await keyPair(dir, "c.txt", true, "main");
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { recipients: [a.recipient] });
    await catalogueBackup(ws, b, [a.recipient]);
    const payload = async (): Promise<Buffer> => {
      const bytes = await readFile(b.path);
      return bytes.subarray(bytes.indexOf(0x0a, bytes.indexOf("\n--- ") + 1) + 1);
    };
    const before = await payload();
    const rekey = (...args: string[]) =>
      runCli(["dr", "rekey", "--sdd", ws.root, "--from", b.path, ...args], { env });

    const add = await rekey("--identity-file", a.file, "--add-recipient", c.recipient, "--json");
    assert.equal(add.code, 0, add.stderr);
    assert.equal(JSON.parse(add.stdout).archives[0].action, "header-rewritten");
    assert.equal(JSON.parse(add.stdout).archives[0].in_place, true, "the header had room");
    assert.ok((await payload()).equals(before));

    const rm = await rekey("--identity-file", c.file, "--remove-recipient", a.recipient);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(
      rm.stdout,
      /header rewritten, payload untouched \(in place\) \(recipients SHA256:[0-9a-f]{16}\)/,
    );
    assert.ok((await payload()).equals(before));
    const rows = [];
    for await (const row of readBackupLog(ws)) rows.push(row);
    assert.deepEqual(rows.at(-1)!.recipients, [c.recipient]);
    // The first rekey read the payload once (the helper's row has no split hashes) and carried its
    // sha256 into its row; this one hashed only the new header: no whole sha256, no sidecar.
    assert.equal(rows.at(-1)!.sha256, null);
    await assert.rejects(readFile(`${b.path}.sha256`), "no sidecar names a sha256 nobody computed");
    const now = await readFile(b.path);
    const headerBytes = now.length - before.length;
    assert.equal(rows.at(-1)!.age_header_bytes, headerBytes);
    assert.equal(
      rows.at(-1)!.age_header_sha256,
      createHash("sha256").update(now.subarray(0, headerBytes)).digest("hex"),
    );
    assert.equal(rows.at(-1)!.age_payload_sha256, createHash("sha256").update(before).digest("hex"));

    const snapshot = await readFile(b.path);
    const wrong = await rekey("--identity-file", a.file, "--add-recipient", a.recipient);
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.match(
      wrong.stderr,
      // The words of dr restore and dr verify: the recipients as the catalogue names them.
      /^bernstein: cannot decrypt .*: none of the 1 identities opens this archive; it is encrypted to recipients SHA256:[0-9a-f]{16}\n$/,
    );
    assert.ok((await readFile(b.path)).equals(snapshot), "nothing changed");

    const malformed = await rekey("--identity-file", c.file, "--add-recipient", "age1qqqq");
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /^bernstein: not a valid age recipient: age1qqqq\n$/);

    const r = await restoreFromFile(b.path, path.join(dir, "r", ".sdd"), {
      identities: [await identityOf(c.file)],
    });
    assert.equal(r.file_count, b.file_count);
    if (spawnSync("age", ["--version"]).status === 0) {
      assert.notEqual(
        spawnSync("age", ["-d", "-i", a.file, "-o", "/dev/null", b.path]).status,
        0,
        "removed: age refuses",
      );
    }
  } finally {
    await cleanup();
  }
});

test("dr rekey of a .enc archive: a new password re-encrypts it; --to-age converts it and removes the .enc; hints when the key kind is wrong", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt", false, "main");
    const enc = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { password: "old" });
    const pw = async (name: string, value: string): Promise<string> => {
      const f = path.join(dir, name);
      await writeFile(f, `${value}\n`, { mode: 0o600 });
      return f;
    };
    const oldPw = await pw("old.pw", "old");
    const newPw = await pw("new.pw", "new");
    const hint = await runCli(
      ["dr", "rekey", "--from", enc.path, "--identity-file", a.file, "--add-recipient", a.recipient],
      { env },
    );
    assert.equal(hint.code, 2);
    assert.match(hint.stderr, /is encrypted with a password: pass --password-file/);

    const re = await runCli(
      ["dr", "rekey", "--from", enc.path, "--password-file", oldPw, "--new-password-file", newPw],
      { env },
    );
    assert.equal(re.code, 0, re.stderr);
    await assert.rejects(
      restoreFromFile(enc.path, path.join(dir, "x", ".sdd"), { password: "old" }),
      /wrong password/,
    );
    const wrongOld = await runCli(
      ["dr", "rekey", "--from", enc.path, "--password-file", oldPw, "--new-password-file", newPw],
      { env },
    );
    assert.equal(wrongOld.code, 4, wrongOld.stderr);

    const conv = await runCli(
      [
        "dr",
        "rekey",
        "--from",
        enc.path,
        "--password-file",
        newPw,
        "--to-age",
        "--add-recipient",
        a.recipient,
        "--json",
      ],
      { env },
    );
    assert.equal(conv.code, 0, conv.stderr);
    const agePath = path.join(dir, "bk.tar.gz.age");
    assert.equal(JSON.parse(conv.stdout).archives[0].path, agePath);
    assert.equal(existsSync(enc.path), false);
    assert.equal(existsSync(`${enc.path}.sha256`), false);
    const again = await runCli(
      [
        "dr",
        "rekey",
        "--from",
        enc.path,
        "--password-file",
        newPw,
        "--to-age",
        "--add-recipient",
        a.recipient,
      ],
      { env },
    );
    assert.equal(again.code, 2, again.stderr);
    assert.equal(
      again.stderr,
      `bernstein: ${enc.path} is gone: it was converted to ${agePath} already (rekey that one, with --identity-file)\n`,
    );
    const r = await restoreFromFile(agePath, path.join(dir, "r", ".sdd"), {
      identities: [await identityOf(a.file)],
    });
    assert.equal(r.file_count, enc.file_count);
    assert.equal(r.audit_key.action, "none");
  } finally {
    await cleanup();
  }
});

test("dr backup to recipients from flags or bernstein.yaml writes .tar.gz.age; restore with --identity-file; wrong identity 4; --plain to s3:// needs --i-know-it-is-plain", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt", false, "main");
    const other = await keyPair(dir, "o.txt", false, "main");
    const b = await runCli(
      [
        "dr",
        "backup",
        "--sdd",
        ws.root,
        "--to",
        path.join(dir, "f.tar.gz"),
        "--recipient",
        a.recipient,
        "--json",
      ],
      { env },
    );
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).path, path.join(dir, "f.tar.gz.age"));
    const rows = [];
    for await (const row of readBackupLog(ws)) rows.push(row);
    assert.deepEqual(rows.at(-1)!.recipients, [a.recipient]);

    // --verify with an identity that cannot read the archive back: refused before writing (it
    // left an archive and its .sha256 that no catalogue row or audit event named, and a retry
    // with the right identity found the file "already exists").
    const v = path.join(dir, "v.tar.gz");
    const verifyWith = (identity: string) =>
      (identity === other.file ? runCli : runMain)(
        [
          "dr",
          "backup",
          "--sdd",
          ws.root,
          "--to",
          v,
          "--recipient",
          a.recipient,
          "--verify",
          "--identity-file",
          identity,
        ],
        { env },
      );
    const unreadable = await verifyWith(other.file);
    assert.equal(unreadable.code, 4, unreadable.stderr);
    assert.match(
      unreadable.stderr,
      /^bernstein: --verify reads the backup back, nothing written: none of the 1 identities opens this archive; it is encrypted to recipients SHA256:[0-9a-f]{16}\n$/,
    );
    assert.equal(existsSync(`${v}.age`) || existsSync(`${v}.age.sha256`), false);
    const retried = await verifyWith(a.file);
    assert.equal(retried.code, 0, retried.stderr);
    assert.ok(existsSync(`${v}.age`));

    await writeFile(path.join(dir, "bernstein.yaml"), `backup:\n  recipients: [${a.recipient}]\n`);
    const c = await runCli(["dr", "backup", "--sdd", ws.root, "--to", path.join(dir, "c.tar.gz"), "--json"], {
      env,
    });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(
      JSON.parse(c.stdout).path,
      path.join(dir, "c.tar.gz.age"),
      "encrypted by default once recipients are configured",
    );
    const plainS3 = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to", "s3://bucket/k.tar.gz", "--plain"],
      { env },
    );
    assert.equal(plainS3.code, 2);
    assert.match(plainS3.stderr, /--i-know-it-is-plain/);

    const wrong = await runCli(
      [
        "dr",
        "restore",
        "--from",
        path.join(dir, "c.tar.gz.age"),
        "--identity-file",
        other.file,
        "--sdd",
        path.join(dir, "w", ".sdd"),
      ],
      { env },
    );
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.match(wrong.stderr, /none of the 1 identities opens this archive/);
    assert.equal(existsSync(path.join(dir, "w", ".sdd")), false, "nothing written");
    const ok = await runCli(
      ["dr", "restore", "--from", path.join(dir, "c.tar.gz.age"), "--sdd", path.join(dir, "r", ".sdd")],
      {
        env: { ...env, BERNSTEIN_DR_IDENTITY_FILE: a.file },
      },
    );
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await cleanup();
  }
});

test("dr rekey --all checks every archive's keys before changing any (exit 2, nothing changed); a failure found part-way names the archives already rekeyed (line and --json)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const id = await keyPair(dir, "id.txt", false, "main");
    const next = await keyPair(dir, "next.txt", false, "main");
    const nextPub = path.join(dir, "next.pub");
    await writeFile(nextPub, `${next.recipient}\n`);
    const a = await backupToFile(ws, path.join(dir, "a.tar.gz"), { recipients: [id.recipient] });
    await catalogueBackup(ws, a, [id.recipient], { split: true });
    const b = await backupToFile(ws, path.join(dir, "b.tar.gz"), { password: "pw1" });
    await catalogueBackup(ws, b, []);
    const before = await readFile(a.path);
    const all = [
      "--sdd",
      ws.root,
      "dr",
      "rekey",
      "--all",
      "--identity-file",
      id.file,
      "--recipients-file",
      nextPub,
    ];

    const missing = await runCli(all, { env });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /b\.tar\.gz\.enc is encrypted with a password: pass --password-file/);
    assert.deepEqual(await readFile(a.path), before, "a.tar.gz.age not rekeyed");
    assert.equal(existsSync(`${a.path}.sha256`), true);

    const wrongPw = path.join(dir, "wrong.pw");
    await writeFile(wrongPw, "nope\n", { mode: 0o600 });
    const partWay = await runCli([...all, "--password-file", wrongPw, "--to-age", "--json"], { env });
    assert.equal(partWay.code, 4, partWay.stderr);
    assert.match(
      partWay.stderr,
      new RegExp(`; already rekeyed before it: ${a.path.replace(/\./g, "\\.")}\\n$`),
    );
    const json = JSON.parse(partWay.stdout);
    assert.deepEqual(
      json.rekeyed.map((o: { path: string; action: string }) => [o.path, o.action]),
      [[a.path, "header-rewritten"]],
    );
    assert.notDeepEqual(await readFile(a.path), before);
  } finally {
    await cleanup();
  }
});

test("dr rekey --all and dr list --check name a catalogue line they cannot read (an archive recorded there is not rekeyed, not checked): a warning and unreadable_backup_rows in --json", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const id = await keyPair(dir, "id.txt", false, "main");
    const next = await keyPair(dir, "next.txt", false, "main");
    const arch = path.join(dir, "arch");
    await mkdir(arch);
    const a = await backupToFile(ws, path.join(arch, "bernstein-backup-20260101T000000Z.tar.gz"), {
      recipients: [id.recipient],
    });
    await catalogueBackup(ws, a, [id.recipient], { split: true });
    const b = await backupToFile(ws, path.join(arch, "bernstein-backup-20260102T000000Z.tar.gz"), {
      recipients: [id.recipient],
    });
    await catalogueBackup(ws, b, [id.recipient], { split: true });
    const log = path.join(ws.runsDir, "backups.jsonl");
    const [first, second] = (await readFile(log, "utf8")).split("\n");
    await writeFile(log, `${first!.slice(0, 40)}\n${second}\n`);
    const bBefore = await readFile(b.path);

    const rekey = await runCli(
      [
        "--sdd",
        ws.root,
        "dr",
        "rekey",
        "--all",
        "--identity-file",
        id.file,
        "--add-recipient",
        next.recipient,
        "--json",
      ],
      { env },
    );
    assert.equal(rekey.code, 0, rekey.stderr);
    assert.match(
      rekey.stderr,
      /^warning: .*backups\.jsonl line 1: not a backup row .*; an archive it recorded was not rekeyed$/m,
    );
    const json = JSON.parse(rekey.stdout);
    assert.deepEqual(
      json.unreadable_backup_rows.map((p: { line: number }) => p.line),
      [1],
    );
    assert.deepEqual(
      json.archives.map((o: { path: string }) => o.path),
      [b.path],
    );
    assert.notDeepEqual(await readFile(b.path), bBefore);

    const list = await runCli(["--sdd", ws.root, "dr", "list", "--at", arch, "--check", "--json"], { env });
    assert.match(
      list.stderr,
      /^warning: .*backups\.jsonl line 1: .*; the backup it recorded is not checked$/m,
    );
    assert.deepEqual(
      JSON.parse(list.stdout).unreadable_backup_rows.map((p: { line: number }) => p.line),
      [1],
    );
  } finally {
    await cleanup();
  }
});
