/**
 * Where a backup password comes from, as a user meets it on the command line: `--password` is
 * visible in `ps` (kept, with a warning), a password file others can read is refused, and a
 * password without `--encrypt` never silently writes a plain archive.
 *
 * Every command and password source checked runs at least once as a real process; the repeats
 * over more inputs (file modes, the second way of giving a password) and setup run main() in
 * this process (runMain).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runCli, runMain, scratchDir, envFor } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const ARGV_WARNING =
  /^warning: --password is visible to other users .*--password-file .*BERNSTEIN_DR_PASSWORD$/m;

test("--password on the command line works and warns once on stderr (never in --json stdout, not under --quiet); --password-file does not", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    const b = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to", archive, "--encrypt", "--password", "pw"],
      {
        env,
      },
    );
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, ARGV_WARNING);
    assert.equal(b.stderr.match(/--password is visible/g)?.length, 1);

    const target = path.join(dir, "r", ".sdd");
    const r = await runCli(
      ["dr", "restore", "--from", `${archive}.enc`, "--password", "pw", "--sdd", target, "--json"],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, ARGV_WARNING);
    assert.equal(JSON.parse(r.stdout).ok, true); // stdout is the one JSON document
    assert.doesNotMatch(r.stdout, /visible/);

    const v = await runCli(["dr", "verify", "--from", `${archive}.enc`, "--password", "pw", "--quiet"], {
      env,
    });
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stderr, "", "--quiet prints nothing but errors");

    const pw = path.join(dir, "pw");
    await writeFile(pw, "pw\n", { mode: 0o600 });
    const f = await runCli(["dr", "verify", "--from", `${archive}.enc`, "--password-file", pw], { env });
    assert.equal(f.code, 0, f.stderr);
    assert.doesNotMatch(f.stderr, /visible/);
    const e = await runMain(["dr", "verify", "--from", `${archive}.enc`], {
      env: { ...env, BERNSTEIN_DR_PASSWORD: "pw" },
    });
    assert.equal(e.code, 0, e.stderr);
    assert.doesNotMatch(e.stderr, /visible/);
  } finally {
    await cleanup();
  }
});

test("a password file readable by group or others is refused (exit 2, says the chmod), for backup, restore and verify; 0600 and 0400 are accepted", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const pw = path.join(dir, "pw");
    await writeFile(pw, "pw\n");
    const archive = path.join(dir, "b.tar.gz");
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(pw, mode);
      const b = await (mode === 0o644 ? runCli : runMain)(
        ["dr", "backup", "--sdd", ws.root, "--to", archive, "--encrypt", "--password-file", pw],
        {
          env,
        },
      );
      assert.equal(b.code, 2, `mode ${mode.toString(8)}: ${b.stderr}`);
      assert.equal(
        b.stderr.trim(),
        `bernstein: --password-file ${pw} is readable by group or others (mode ${mode.toString(8)}); run: chmod 600 ${pw}`,
      );
      assert.equal(existsSync(`${archive}.enc`), false, "nothing written");
    }
    await chmod(pw, 0o600);
    const ok = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to", archive, "--encrypt", "--password-file", pw],
      {
        env,
      },
    );
    assert.equal(ok.code, 0, ok.stderr);
    await chmod(pw, 0o640);
    const target = path.join(dir, "r", ".sdd");
    const r = await runCli(
      ["dr", "restore", "--from", `${archive}.enc`, "--password-file", pw, "--sdd", target],
      {
        env,
      },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /readable by group or others \(mode 640\); run: chmod 600 /);
    assert.equal(existsSync(target), false);
    const v = await runCli(["dr", "verify", "--from", `${archive}.enc`, "--password-file", pw, "--json"], {
      env,
    });
    assert.equal(v.code, 2, v.stderr);
    await chmod(pw, 0o400);
    const v2 = await runMain(["dr", "verify", "--from", `${archive}.enc`, "--password-file", pw], { env });
    assert.equal(v2.code, 0, v2.stderr);
  } finally {
    await cleanup();
  }
});

test("a password without --encrypt is a usage error naming --encrypt; BERNSTEIN_DR_PASSWORD alone makes a plain backup that says so", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const pw = path.join(dir, "pw");
    await writeFile(pw, "pw\n", { mode: 0o600 });
    const archive = path.join(dir, "b.tar.gz");
    for (const args of [
      ["--password", "foo"],
      ["--password-file", pw],
    ]) {
      for (const cmd of [
        ["dr", "backup", "--sdd", ws.root, "--to", archive, ...args],
        ["dr", "backup", "--sdd", ws.root, "--to", archive, "--dry-run", ...args],
        [
          "dr",
          "schedule",
          "--sdd",
          ws.root,
          "--every",
          "1h",
          "--to-dir",
          path.join(dir, "cat"),
          "--once",
          ...args,
        ],
        ["dr", "drill", "--sdd", ws.root, ...args],
      ]) {
        const r = await (args[0] === "--password" ? runCli : runMain)(cmd, { env });
        assert.equal(r.code, 2, `${cmd.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^bernstein: ${args[0]} without --encrypt: .*add --encrypt`));
      }
      assert.equal(existsSync(archive), false, "no plain archive written");
      assert.equal(existsSync(path.join(dir, "cat")), false);
    }

    const plain = await runCli(["dr", "backup", "--sdd", ws.root, "--to", archive, "--json"], {
      env: { ...env, BERNSTEIN_DR_PASSWORD: "foo" },
    });
    assert.equal(plain.code, 0, plain.stderr);
    const notice = plain.stderr.split("\n").filter((l) => /BERNSTEIN_DR_PASSWORD/.test(l));
    assert.deepEqual(notice, [
      "warning: BERNSTEIN_DR_PASSWORD is set but --encrypt was not given: this backup is NOT encrypted",
    ]);
    assert.equal(JSON.parse(plain.stdout).encrypted, false);
    assert.deepEqual([...readFileSync(archive).subarray(0, 2)], [0x1f, 0x8b], "a plain gzip archive");

    // With --encrypt the variable is the password, and nothing is said about it.
    const enc = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to", path.join(dir, "e.tar.gz"), "--encrypt"],
      {
        env: { ...env, BERNSTEIN_DR_PASSWORD: "foo" },
      },
    );
    assert.equal(enc.code, 0, enc.stderr);
    assert.doesNotMatch(enc.stderr, /BERNSTEIN_DR_PASSWORD|visible/);
  } finally {
    await cleanup();
  }
});

test("a password given for a plain archive: dr verify and dr restore warn once on stderr, exit 0; no --decrypt needed", async (t) => {
  const { dir, cleanup } = await scratchDir();
  t.after(cleanup);
  const { ws } = await makeSmallWorkspace(dir);
  const env = envFor(dir);
  const archive = path.join(dir, "plain.tar.gz");
  assert.equal((await runMain(["dr", "backup", "--sdd", ws.root, "--to", archive], { env })).code, 0);
  const pwFile = path.join(dir, "pw");
  await writeFile(pwFile, "pw\n", { mode: 0o600 });
  const warning = /^warning: the archive is plain; the password is not used$/m;
  const verify = await runCli(["dr", "verify", "--from", archive, "--password-file", pwFile], { env });
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(verify.stderr.match(new RegExp(warning, "gm"))?.length, 1, verify.stderr);
  const target = path.join(dir, "restored", ".sdd");
  const restore = await runCli(["--sdd", target, "dr", "restore", "--from", archive], {
    env: { ...env, BERNSTEIN_DR_PASSWORD: "pw" },
  });
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(restore.stderr, warning);
  assert.ok(existsSync(target));
});

test("an empty BERNSTEIN_DR_PASSWORD is an unset one: a plain backup and its restore work and say nothing of it; --encrypt says the variable is empty", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = { ...envFor(dir), BERNSTEIN_DR_PASSWORD: "" };
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    const plain = await runCli(["dr", "backup", "--sdd", ws.root, "--to", archive, "--json"], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /BERNSTEIN_DR_PASSWORD|password/);
    assert.equal(JSON.parse(plain.stdout).encrypted, false);

    const restored = await runMain(
      ["dr", "restore", "--from", archive, "--sdd", path.join(dir, "r", ".sdd"), "--json"],
      { env },
    );
    assert.equal(restored.code, 0, restored.stderr);
    assert.doesNotMatch(restored.stderr, /password/);

    const enc = await runMain(
      ["dr", "backup", "--sdd", ws.root, "--to", path.join(dir, "e.tar.gz"), "--encrypt"],
      { env },
    );
    assert.equal(enc.code, 2, enc.stderr);
    assert.match(enc.stderr, /^bernstein: .*needs a password: .*\(BERNSTEIN_DR_PASSWORD is set but empty\)/);
    assert.equal(existsSync(path.join(dir, "e.tar.gz.enc")), false);
  } finally {
    await cleanup();
  }
});
