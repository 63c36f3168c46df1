/**
 * A `dr backup --to FILE` that is refused says so in one line and has not said that it started:
 * a folder that is not there, or a backup already at FILE (exit 6), print no "Backing up ..."
 * first, and write nothing. A dry run is refused the same way. So is a --to-dir that names a file,
 * an s3:// destination whose bucket cannot be listed, and a dr schedule to a file.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";

test("dr backup to a folder that is not there, or over a backup: the refusal alone", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-refused-");
  t.after(cleanup);
  await makeSmallWorkspace(dir);
  const cli = (...args: string[]) => runCli(args, { cwd: dir, env: envFor(dir) });
  assert.equal((await cli("dr", "backup", "--to", "b.tar.gz")).code, 0);
  const before = readFileSync(path.join(dir, "b.tar.gz"));
  for (const [to, says] of [
    ["nowhere/b.tar.gz", /^bernstein: cannot write nowhere\/b\.tar\.gz: folder nowhere does not exist\n$/],
    [
      "b.tar.gz",
      /^bernstein: b\.tar\.gz already exists; not replacing a backup \(pass --force to replace it\)\n$/,
    ],
  ] as const) {
    // A dry run reports the refusal the real run would make.
    for (const dry of [[], ["--dry-run"]]) {
      const r = await cli("dr", "backup", "--to", to, ...dry);
      assert.equal(r.code, 6, r.stderr);
      assert.equal(r.stdout, "", "no 'Backing up ...' before the refusal");
      assert.match(r.stderr, says);
      const json = await cli("--json", "dr", "backup", "--to", to, ...dry);
      assert.equal(json.code, 6);
      assert.equal(JSON.parse(json.stdout).exit_code, 6, "stdout is the one JSON document");
    }
  }
  assert.deepEqual(readFileSync(path.join(dir, "b.tar.gz")), before);
});

test("a destination that cannot take the backup is refused before anything is printed: --to-dir FILE, --to s3:// unreachable, dr schedule", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-refused-dir-");
  t.after(cleanup);
  await makeSmallWorkspace(dir);
  writeFileSync(path.join(dir, "afile"), "not a folder\n");
  // A port nothing listens on: the bucket's listing fails at once (exit 7).
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const env = { ...envFor(dir), AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s", AWS_REGION: "us-east-1" };
  const cli = (...args: string[]) => runCli(args, { cwd: dir, env });
  const s3 = ["--endpoint", `http://127.0.0.1:${port}`, "--retries", "0"];
  for (const [args, code, says] of [
    [["dr", "backup", "--to-dir", "afile"], 6, /^bernstein: --to-dir afile: it is a file, not a folder\n$/],
    [
      ["dr", "backup", "--to-dir", "afile", "--dry-run"],
      6,
      /^bernstein: --to-dir afile: it is a file, not a folder\n$/,
    ],
    [
      ["dr", "backup", "--to", "s3://bucket/b.tar.gz", ...s3],
      7,
      /^bernstein: list s3:\/\/bucket\/: .*ECONNREFUSED/,
    ],
    [
      ["dr", "schedule", "--every", "1h", "--to-dir", "afile"],
      6,
      /^bernstein: --to-dir afile: it is a file, not a folder\n$/,
    ],
  ] as const) {
    const r = await cli(...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, "", `${args.join(" ")}: nothing said before the refusal`);
    assert.match(r.stderr, says);
    const json = await cli("--json", ...args);
    assert.equal(json.code, code);
    assert.equal(JSON.parse(json.stdout).exit_code, code, "stdout is the one JSON document");
  }
  assert.equal(readFileSync(path.join(dir, "afile"), "utf8"), "not a folder\n");

  // A folder that is not there yet is made, and the heading comes first.
  const made = await cli("dr", "backup", "--to-dir", "new");
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /^Backing up .* to new\.\.\.\nBackup complete!\n/);
});

test("dr backup --dry-run counts in words that agree with the number: 1 folder", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-dry-words-");
  t.after(cleanup);
  const { ws } = await makeSmallWorkspace(dir);
  mkdirSync(path.join(ws.root, "logs"), { recursive: true });
  const r = await runCli(["dr", "backup", "--to", "b.tar.gz", "--dry-run"], { cwd: dir, env: envFor(dir) });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Excluded \(1 folder, \d+ files\):$/m);
});
