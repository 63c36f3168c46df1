/**
 * Where `dr backup` writes and `dr restore` reads, as a user meets it: an existing backup is never
 * replaced without --force, an encrypted backup's name gets .enc once, file systems that refuse
 * new entries (/proc) fail at once with exit 6, and a plain name that was encrypted is pointed to.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { runCli, scratchDir, envFor } from "../helpers.js";
import { sha } from "./support/craft.js";
import { makeSmallWorkspace } from "./support/workspace.js";

function oneLine(stderr: string): void {
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
  assert.doesNotMatch(stderr, /at .*\.js:\d+/);
}

test("an existing backup is refused (exit 6, naming it) unless --force; a name ending in .enc gets no second .enc", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const dr = (...args: string[]) => runCli(["--sdd", ws.root, "dr", ...args], { env, cwd: dir });
    const archive = path.join(dir, "b.tar.gz");
    assert.equal((await dr("backup", "--to", archive)).code, 0);
    const before = sha(readFileSync(archive));
    const sidecarBefore = readFileSync(`${archive}.sha256`, "utf8");

    const again = await dr("backup", "--to", archive);
    assert.equal(again.code, 6, again.stderr);
    oneLine(again.stderr);
    assert.match(again.stderr, new RegExp(`${archive.replace(/[.]/g, "\\.")} already exists.*--force`));
    const json = await dr("backup", "--to", archive, "--json");
    assert.equal(json.code, 6);
    assert.equal(JSON.parse(json.stdout).exit_code, 6);
    assert.equal(sha(readFileSync(archive)), before, "the existing backup is untouched");
    assert.equal(readFileSync(`${archive}.sha256`, "utf8"), sidecarBefore);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.includes(".tmp-")),
      [],
      "no temp file left",
    );

    const forced = await dr("backup", "--to", archive, "--force");
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(sha(readFileSync(archive)), before, "--force replaced it (the backup log grew)");
    assert.match(readFileSync(`${archive}.sha256`, "utf8"), new RegExp(sha(readFileSync(archive))));

    // --to NAME.enc --encrypt writes NAME.enc, and the same backup again is refused.
    const named = path.join(dir, "e.tar.gz.enc");
    const enc = await dr("backup", "--to", named, "--encrypt", "--password", "pw");
    assert.equal(enc.code, 0, enc.stderr);
    assert.match(enc.stdout, /Path: .*e\.tar\.gz\.enc\n/);
    assert.ok(existsSync(named) && !existsSync(`${named}.enc`));
    // (--force: a dry run over an existing backup is refused like the real run.)
    const dry = await dr(
      "backup",
      "--to",
      named,
      "--encrypt",
      "--password",
      "pw",
      "--dry-run",
      "--force",
      "--json",
    );
    assert.equal(JSON.parse(dry.stdout).to, named);
    // --to NAME --encrypt lands on NAME.enc, which exists now.
    const plainName = await dr("backup", "--to", path.join(dir, "e.tar.gz"), "--encrypt", "--password", "pw");
    assert.equal(plainName.code, 6, plainName.stderr);
    assert.match(plainName.stderr, /e\.tar\.gz\.enc already exists/);
  } finally {
    await cleanup();
  }
});

test("dr restore --from NAME when only NAME.enc exists: exit 2, 'did you mean NAME.enc?'", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const b = await runCli(
      ["--sdd", ws.root, "dr", "backup", "--to", "./bk.tar.gz", "--encrypt", "--password", "pw"],
      { env, cwd: dir },
    );
    assert.equal(b.code, 0, b.stderr);
    const target = path.join(dir, "t", ".sdd");
    for (const verb of ["restore", "verify"]) {
      const r = await runCli(["--sdd", target, "dr", verb, "--from", "./bk.tar.gz"], {
        env,
        cwd: dir,
      });
      assert.equal(r.code, 2, r.stderr);
      oneLine(r.stderr);
      assert.match(r.stderr, /--from \.\/bk\.tar\.gz: no such file; did you mean \.\/bk\.tar\.gz\.enc\?/);
    }
    const none = await runCli(["--sdd", target, "dr", "restore", "--from", "./nothing.tar.gz"], {
      env,
      cwd: dir,
    });
    assert.equal(none.code, 2);
    assert.doesNotMatch(none.stderr, /did you mean/);
    assert.ok(!existsSync(path.join(dir, "t")));
  } finally {
    await cleanup();
  }
});

test(
  "a file system that refuses new entries (/proc): restore and backup exit 6 at once, naming what the user gave",
  {
    skip: !existsSync("/proc/self") && "no /proc here",
  },
  async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const env = envFor(dir);
      const { ws } = await makeSmallWorkspace(dir);
      const archive = path.join(dir, "b.tar.gz");
      assert.equal((await runCli(["--sdd", ws.root, "dr", "backup", "--to", archive], { env })).code, 0);
      // Node's recursive mkdir retried this forever at full CPU; the timeout only ends a hung run.
      const restore = await runCli(["--sdd", "/proc/foo/.sdd", "dr", "restore", "--from", archive], {
        env,
        timeoutMs: 60_000,
      });
      assert.equal(restore.signal, null, "the restore ended by itself");
      assert.equal(restore.code, 6, restore.stderr);
      oneLine(restore.stderr);
      assert.match(restore.stderr, /cannot restore into \/proc\/foo\/\.sdd/);

      const backup = await runCli(["--sdd", ws.root, "dr", "backup", "--to", "/proc/x.tar.gz"], { env });
      assert.equal(backup.code, 6, backup.stderr);
      oneLine(backup.stderr);
      assert.match(backup.stderr, /cannot write \/proc\/x\.tar\.gz/);
      assert.doesNotMatch(backup.stderr, /tmp-/, "the user never named a temp file");
    } finally {
      await cleanup();
    }
  },
);

test("a restore that fails leaves none of the folders it made for its target, and every folder that was there", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    assert.equal(
      (await runCli(["--sdd", ws.root, "dr", "backup", "--to", archive], { env, cwd: dir })).code,
      0,
    );
    const bytes = readFileSync(archive);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    const damaged = path.join(dir, "damaged.tar.gz");
    writeFileSync(damaged, bytes);
    mkdirSync(path.join(dir, "there"));
    for (const target of ["new/a/b/.sdd", "there/x/.sdd"]) {
      const r = await runCli(["--sdd", path.join(dir, target), "dr", "restore", "--from", damaged], {
        env,
        cwd: dir,
      });
      assert.equal(r.code, 5, r.stderr);
      oneLine(r.stderr);
    }
    assert.equal(existsSync(path.join(dir, "new")), false, "new/a/b made by the restore, then removed");
    assert.deepEqual(readdirSync(path.join(dir, "there")), [], "there/ stays, there/x goes");
    // A restore that succeeds keeps what it made.
    const ok = await runCli(["--sdd", path.join(dir, "new/a/b/.sdd"), "dr", "restore", "--from", archive], {
      env,
      cwd: dir,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(path.join(dir, "new/a/b/.sdd/runtime/restored-from.json")));
  } finally {
    await cleanup();
  }
});
