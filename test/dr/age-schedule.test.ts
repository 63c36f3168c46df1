/**
 * `dr schedule` with age recipients, run for real (`--once`): the backups it writes to a
 * catalogue location are `.tar.gz.age`, encrypted by default once the configuration names
 * recipients or a password source, plain only with `--plain` (and to s3:// only with
 * `--i-know-it-is-plain`).
 */
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readBackupLog } from "../../src/dr/backup-log.js";
import { recipientFingerprint } from "../../src/dr/age/keys.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { startS3Harness } from "../storage/support/s3-harness.js";
import { keyPair } from "./support/age-keys.js";
import { makeSmallWorkspace } from "./support/workspace.js";

/** One scheduled run (`dr schedule --every 1h --once`) of the workspace at `sdd` to `to`. */
const scheduleOnce = (sdd: string, to: string, args: string[], opts: Parameters<typeof runCli>[1]) =>
  runCli(["dr", "schedule", "--sdd", sdd, "--every", "1h", "--once", "--to-dir", to, ...args], opts);

const backupsIn = async (dir: string) =>
  (await readdir(dir)).filter((n) => n.startsWith("bernstein-backup-") && !n.endsWith(".json")).sort();

test("dr schedule --recipient writes .tar.gz.age to the catalogue; configured recipients or password encrypt by default; --plain to s3:// needs --i-know-it-is-plain", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt");
    const at = path.join(dir, "bk");
    const once = (...args: string[]) => scheduleOnce(ws.root, at, args, { env, cwd: dir });

    const flagged = await once("--recipient", a.recipient, "--json");
    assert.equal(flagged.code, 0, flagged.stderr);
    const run = JSON.parse(flagged.stdout.trim().split("\n").at(-1)!);
    assert.match(run.name, /^bernstein-backup-\d{8}T\d{6}Z\.tar\.gz\.age$/);
    assert.equal(run.encrypted, true);
    const rows = [];
    for await (const row of readBackupLog(ws)) rows.push(row);
    assert.deepEqual(rows.at(-1)!.recipient_fingerprints, [recipientFingerprint(a.recipient)]);

    const restored = await runCli(
      [
        "dr",
        "restore",
        "--latest",
        "--at",
        at,
        "--sdd",
        path.join(dir, "r", ".sdd"),
        "--identity-file",
        a.file,
      ],
      { env },
    );
    assert.equal(restored.code, 0, restored.stderr);

    await writeFile(path.join(dir, "bernstein.yaml"), `backup:\n  recipients: [${a.recipient}]\n`);
    const byDefault = await once("--json");
    assert.equal(byDefault.code, 0, byDefault.stderr);
    assert.match(JSON.parse(byDefault.stdout.trim()).name, /\.tar\.gz\.age$/, "encrypted by default");

    const plain = await once("--plain", "--json");
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(JSON.parse(plain.stdout.trim()).name, /\.tar\.gz$/, "--plain writes a plain backup");

    const before = await backupsIn(at);
    const plainS3 = await scheduleOnce(ws.root, "s3://backups/p/", ["--plain"], { env, cwd: dir });
    assert.equal(plainS3.code, 2, plainS3.stderr);
    assert.match(plainS3.stderr, /--plain to s3:\/\/backups\/p\/ .*--i-know-it-is-plain/);
    assert.equal(plainS3.stderr.trim().split("\n").length, 1, plainS3.stderr);

    const pwFile = path.join(dir, "pw.txt");
    await writeFile(pwFile, "correct horse\n", { mode: 0o600 });
    await writeFile(path.join(dir, "bernstein.yaml"), `backup:\n  password_file: ${pwFile}\n`);
    const withPassword = await once("--json");
    assert.equal(withPassword.code, 0, withPassword.stderr);
    assert.match(JSON.parse(withPassword.stdout.trim()).name, /\.tar\.gz\.enc$/);

    const bad = await once("--recipient", "age1notakey");
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /not a valid age recipient: age1notakey/);
    assert.equal((await backupsIn(at)).length, before.length + 1, "nothing written by a refused run");
  } finally {
    await cleanup();
  }
});

test("dr schedule to s3:// with a recipient uploads NAME.tar.gz.age with its record; dr list names its recipient; restore --latest opens it", async () => {
  const h = await startS3Harness({ buckets: ["age-sched"] });
  const { dir, cleanup } = await scratchDir();
  try {
    const env = { ...envFor(dir), ...h.env, BERNSTEIN_BACKUP_LOCAL_DIR: path.join(dir, "local") };
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt");
    const root = "s3://age-sched/site/";
    const run = await scheduleOnce(ws.root, root, ["--recipient", a.recipient, "--json"], { env });
    assert.equal(run.code, 0, run.stderr);
    const done = JSON.parse(run.stdout.trim());
    assert.match(done.location, /^s3:\/\/age-sched\/site\/bernstein-backup-\d{8}T\d{6}Z\.tar\.gz\.age$/);
    assert.equal(done.verified, true);
    const listed = await runCli(["dr", "list", "--at", root, "--sdd", ws.root, "--json"], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const [only] = JSON.parse(listed.stdout).backups as {
      name: string;
      verified: boolean;
      recipient_fingerprints: string[];
    }[];
    assert.equal(only!.name, done.name);
    assert.equal(only!.verified, true);
    assert.deepEqual(only!.recipient_fingerprints, [recipientFingerprint(a.recipient)]);
    const restored = await runCli(
      [
        "dr",
        "restore",
        "--latest",
        "--at",
        root,
        "--identity-file",
        a.file,
        "--sdd",
        path.join(dir, "r", ".sdd"),
      ],
      { env },
    );
    assert.equal(restored.code, 0, restored.stderr);
  } finally {
    await cleanup();
    await h.close();
  }
});
