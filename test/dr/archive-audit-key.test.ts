/**
 * The audit key an archive carries is the key of every workspace of the user once installed: a
 * plain archive that carries one is refused (neither our plain backups nor the Python original's
 * do), and an encrypted one's key is installed only when it signed the restored audit log.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { AuditLog } from "../../src/audit/log.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { archiveOf, type CraftFile } from "./support/craft.js";

const AGE_OK = spawnSync("age", ["--version"]).status === 0;

const KEY_A = "a".repeat(64);
const KEY_B = "b".repeat(64);

/** An audit log of two entries signed with `key`, as the archive files that hold it. */
async function auditFilesSignedWith(dir: string, key: string): Promise<CraftFile[]> {
  const auditDir = path.join(dir, "audit-src");
  await mkdir(auditDir, { recursive: true });
  const log = await AuditLog.open(auditDir, Buffer.from(key, "ascii"));
  for (let i = 0; i < 2; i++)
    await log.append({
      event_type: "task.transition",
      actor: "t",
      resource_type: "task",
      resource_id: `T-${i}`,
      details: {},
    });
  const files: CraftFile[] = [];
  for (const name of await readdir(auditDir))
    files.push({ path: `audit/${name}`, data: await readFile(path.join(auditDir, name)) });
  return files;
}

const keyEntry = (key: string): CraftFile => ({
  path: "secrets/audit.key",
  data: Buffer.from(key),
  mode: 0o600,
});

test("a plain archive carrying secrets/audit.key is refused by restore, its dry run and verify: exit 5, one line, nothing written", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const archive = path.join(dir, "evil.tar.gz");
    const audit = await auditFilesSignedWith(dir, KEY_A);
    await writeFile(archive, archiveOf([...audit, keyEntry(KEY_A)], { dirs: ["audit", "secrets"] }));
    const target = path.join(dir, "r", ".sdd");
    for (const args of [
      ["dr", "restore", "--from", archive, "--sdd", target],
      ["dr", "restore", "--from", archive, "--dry-run"],
      ["dr", "verify", "--from", archive],
    ]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 5, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(
        r.stderr,
        'bernstein: hostile entry "secrets/audit.key": an audit key in an archive that is not encrypted (plain backups never carry it)\n',
      );
    }
    assert.equal(existsSync(path.join(dir, "r")), false, "nothing made for the target");
    assert.equal(existsSync(path.join(dir, "key")), false, "no audit key installed");
  } finally {
    await cleanup();
  }
});

test(
  "an encrypted archive's audit key is installed only when it signed the restored log; otherwise (or with a log without entries) it is set aside with a warning",
  { skip: AGE_OK ? false : "the age command is not installed" },
  async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const env = envFor(dir);
      const id = await generateIdentityLine(false);
      const idFile = path.join(dir, "id.txt");
      await writeFile(idFile, id.identity + "\n", { mode: 0o600 });
      const audit = await auditFilesSignedWith(dir, KEY_A);
      // Made with the recipient alone, as anyone who has it can.
      const ageArchive = async (name: string, files: CraftFile[]): Promise<string> => {
        const plain = path.join(dir, `${name}.tar.gz`);
        await writeFile(plain, archiveOf(files, { dirs: ["audit", "secrets"] }));
        const out = `${plain}.age`;
        const age = spawnSync("age", ["-r", id.recipient, "-o", out, plain]);
        assert.equal(age.status, 0, String(age.stderr));
        return out;
      };
      const restore = async (archive: string, name: string) => {
        const target = path.join(dir, name, ".sdd");
        const r = await runCli(
          ["dr", "restore", "--from", archive, "--identity-file", idFile, "--sdd", target, "--json"],
          { env },
        );
        assert.equal(r.code, 0, r.stderr);
        return { target, r, doc: JSON.parse(r.stdout) as { audit_key: Record<string, string> } };
      };
      const keyPath = env.BERNSTEIN_AUDIT_KEY_PATH!;

      // The key did not sign the log it comes with: not installed, saved beside the target.
      const forged = await restore(await ageArchive("forged", [...audit, keyEntry(KEY_B)]), "r1");
      assert.equal(forged.doc.audit_key.action, "set-aside");
      assert.equal(existsSync(keyPath), false, "the archive's key was installed");
      assert.equal(await readFile(`${forged.target}.audit-key-from-backup`, "utf8"), KEY_B);
      assert.match(
        forged.r.stderr,
        /the backup's audit key was not installed at .*: none of the restored audit log's newest entries verifies with it; the backup's key is saved at /,
      );

      // A log without entries proves no key.
      const empty = await restore(await ageArchive("empty", [keyEntry(KEY_B)]), "r2");
      assert.equal(empty.doc.audit_key.action, "set-aside");
      assert.equal(existsSync(keyPath), false, "the archive's key was installed");
      assert.match(empty.r.stderr, /the restored audit log has no entries/);

      // Not a key at all.
      const junk = await restore(await ageArchive("junk", [...audit, keyEntry("not a key")]), "r3");
      assert.equal(junk.doc.audit_key.action, "set-aside");
      assert.equal(existsSync(keyPath), false, "the archive's key was installed");
      assert.match(junk.r.stderr, /it is not 64 hex characters/);

      // The key that signed the log is installed.
      const good = await restore(await ageArchive("good", [...audit, keyEntry(KEY_A)]), "r4");
      assert.equal(good.doc.audit_key.action, "installed");
      assert.equal(await readFile(keyPath, "utf8"), KEY_A);
      const av = await runCli(["audit", "verify", "--sdd", good.target], { env });
      assert.equal(av.code, 0, av.stdout + av.stderr);
    } finally {
      await cleanup();
    }
  },
);
