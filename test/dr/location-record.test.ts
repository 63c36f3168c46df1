/**
 * A backup in a local catalogue folder (`dr backup --to-dir`) has no `.sha256` sidecar and no
 * store metadata: its record `<name>.json` states its sha256, and every read of the archive holds
 * the bytes to it. An archive replaced by other valid bytes is refused (exit 5, naming the record)
 * instead of restored as if it were the recorded one; damage to an encrypted one is told from a
 * wrong password.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";

test("a --to-dir backup is read against the sha256 its record states", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-record-");
  t.after(cleanup);
  const env = envFor(dir);
  const sdd = path.join(dir, "ws", ".sdd");
  const bk = path.join(dir, "bk");
  const ok = async (args: string[]) => {
    const r = await runCli([...args, "--sdd", sdd], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  };
  await ok(["init"]);
  await ok(["task", "add", "first", "--command", "true"]);
  const other = path.join(dir, "other.tar.gz");
  await ok(["dr", "backup", "--to", other]);
  await ok(["task", "add", "second", "--command", "true"]);
  await ok(["dr", "backup", "--to-dir", bk]);
  const name = (await readdir(bk)).find((n) => n.endsWith(".tar.gz"))!;
  assert.ok(!existsSync(path.join(bk, `${name}.sha256`)), "the catalogue folder has no sidecar");

  await ok(["dr", "verify", "--latest", "--at", bk]);
  // Other valid bytes under the recorded name (an older backup copied over it, a sync gone wrong).
  await copyFile(other, path.join(bk, name));
  for (const args of [
    ["dr", "verify", "--latest", "--at", bk],
    ["dr", "restore", "--latest", "--at", bk, "--sdd", path.join(dir, "r1", ".sdd")],
    ["dr", "restore", "--from", path.join(bk, name), "--sdd", path.join(dir, "r2", ".sdd")],
  ]) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 5, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(`damaged or altered.*the record .*${name.replace(/\./g, "\\.")}\\.json`),
    );
  }
  assert.ok(!existsSync(path.join(dir, "r1")) && !existsSync(path.join(dir, "r2")), "nothing restored");
});

test("a flipped byte of an encrypted --to-dir backup is damage, not a wrong password", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-record-");
  t.after(cleanup);
  const env = envFor(dir);
  const sdd = path.join(dir, "ws", ".sdd");
  const bk = path.join(dir, "bk");
  const pw = path.join(dir, "pw");
  await writeFile(pw, "right horse battery\n", { mode: 0o600 });
  for (const args of [["init"], ["dr", "backup", "--to-dir", bk, "--encrypt", "--password-file", pw]]) {
    const r = await runCli([...args, "--sdd", sdd], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  const name = (await readdir(bk)).find((n) => n.endsWith(".enc"))!;
  const file = path.join(bk, name);
  const bytes = await readFile(file);
  bytes[5]! ^= 1;
  await writeFile(file, bytes);
  const r = await runCli(
    ["dr", "restore", "--latest", "--at", bk, "--password-file", pw, "--sdd", path.join(dir, "r", ".sdd")],
    { env },
  );
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /damaged or altered/);
});

test("dr status says when the newest backup was never read back", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-record-");
  t.after(cleanup);
  const env = envFor(dir);
  const sdd = path.join(dir, "ws", ".sdd");
  const run = async (args: string[]) => {
    const r = await runCli([...args, "--sdd", sdd], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  await run(["init"]);
  await run(["dr", "backup", "--to", path.join(dir, "plain.tar.gz")]);
  assert.match(
    await run(["dr", "status"]),
    /^Backup: +\S*plain\.tar\.gz \(.* old; never read back: `dr verify` it\)$/m,
  );
  assert.equal(
    (JSON.parse(await run(["dr", "status", "--json"])) as { last_backup: { verified: boolean } }).last_backup
      .verified,
    false,
  );
  await run(["dr", "backup", "--to", path.join(dir, "checked.tar.gz"), "--verify"]);
  assert.match(await run(["dr", "status"]), /^Backup: +\S*checked\.tar\.gz \([^;]* old\)$/m);
});
