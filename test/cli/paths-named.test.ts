/**
 * Every dr command names a path the way the user gave it: what was typed is echoed as typed, and
 * what the command worked out (a catalogue's newest backup, a resolved target, an archive
 * location) is shown relative to the working folder when inside it. --json keeps the absolute
 * locations, and echoes `from` as given. (dr rekey named the archive by its absolute path in both.)
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { backupToFile } from "../../src/dr/backup.js";

test("dr commands name paths as the user gave them, relative to the working folder", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-paths-named-");
  t.after(cleanup);
  const { ws, keyFile } = await makeSmallWorkspace(dir);
  const env = envFor(dir);
  const cli = async (...args: string[]) => {
    const r = await runCli(args, { cwd: dir, env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
    return r;
  };
  mkdirSync(path.join(dir, "b"));
  writeFileSync(path.join(dir, "pw"), "secret\n", { mode: 0o600 });
  writeFileSync(path.join(dir, "new.pw"), "newer\n", { mode: 0o600 });
  // The key and the archives to rekey through the library: only the commands below are checked.
  const { identity, recipient } = await generateIdentityLine(false);
  writeFileSync(path.join(dir, "id.txt"), `${identity}\n`, { mode: 0o600 });
  const b = (name: string) => path.join(dir, "b", name);
  await backupToFile(ws, b("e.tar.gz"), { password: "secret", auditKeyPath: keyFile });
  await backupToFile(ws, b("g.tar.gz"), { recipients: [recipient], auditKeyPath: keyFile });
  await backupToFile(ws, b("c.tar.gz"), { password: "secret", auditKeyPath: keyFile });

  const human = [
    await cli(
      "dr",
      "rekey",
      "--from",
      "b/e.tar.gz.enc",
      "--password-file",
      "pw",
      "--new-password-file",
      "new.pw",
    ),
    await cli(
      "dr",
      "rekey",
      "--from",
      "b/g.tar.gz.age",
      "--identity-file",
      "id.txt",
      "--add-recipient",
      recipient,
    ),
    await cli(
      "dr",
      "rekey",
      "--from",
      "b/c.tar.gz.enc",
      "--password-file",
      "pw",
      "--to-age",
      "--add-recipient",
      recipient,
    ),
    await cli("dr", "backup", "--to-dir", "cat"),
    await cli("dr", "list", "--at", "cat"),
    await cli("--sdd", "r/.sdd", "dr", "restore", "--latest", "--at", "cat"),
    await cli("dr", "verify", "--latest", "--at", "cat"),
    await cli("dr", "archive", "--to", "wal-archive", "--once"),
    await cli("dr", "list", "--from", "wal-archive"),
    await cli("--sdd", "p/.sdd", "dr", "restore", "--from", "wal-archive", "--latest"),
    await cli("--sdd", "p/.sdd", "dr", "restore", "--from", "wal-archive", "--latest"),
    await cli("dr", "verify", "--from", "wal-archive", "--latest"),
  ];
  // The audit key's path comes from the environment as an absolute path: echoed as given.
  const key = env.BERNSTEIN_AUDIT_KEY_PATH!;
  for (const r of human) {
    const said = `${r.stdout}${r.stderr}`.replaceAll(key, "KEY");
    assert.ok(!said.includes(dir), said);
  }
  assert.match(human[0]!.stdout, /^b\/e\.tar\.gz\.enc: re-encrypted/);
  assert.match(human[2]!.stdout, /^b\/c\.tar\.gz\.enc -> b\/c\.tar\.gz\.age: converted to age/);
  assert.match(human[5]!.stdout, /^Restoring cat\/bernstein-backup-.*\.tar\.gz into r\/\.sdd\.\.\./);
  assert.match(human[9]!.stdout, /^Restored p\/\.sdd as of /);

  const json = JSON.parse(
    (
      await cli(
        "--json",
        "dr",
        "rekey",
        "--from",
        "b/e.tar.gz.enc",
        "--password-file",
        "new.pw",
        "--new-password-file",
        "pw",
      )
    ).stdout,
  ) as { archives: { from: string; path: string }[] };
  assert.deepEqual(
    json.archives.map((a) => [a.from, a.path]),
    [["b/e.tar.gz.enc", "b/e.tar.gz.enc"]],
  );
});

test("wal verify and wal show name the WAL folder as the user would type it", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-paths-named-wal-");
  t.after(cleanup);
  const env = envFor(dir);
  const cli = (...args: string[]) => runCli(["--sdd", "w/.sdd", ...args], { cwd: dir, env });
  const init = await cli("init");
  assert.equal(init.code, 0, init.stderr);
  assert.match(
    init.stdout,
    /^Initialized workspace at w\/\.sdd \(\d+ folders created\)\nAgents: w\/\.sdd\/config\/agents\.yaml /,
  );
  assert.match((await cli("init")).stdout, /^Workspace at w\/\.sdd already initialized/);
  const empty = await cli("wal", "verify");
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout.trim(), `no WAL runs in ${path.join("w", ".sdd", "runtime", "wal")}`);
  for (const cmd of [
    ["wal", "verify"],
    ["wal", "show"],
  ]) {
    const r = await cli(...cmd, "--run", "nope");
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^bernstein: unknown run "nope"; runs in w/\\.sdd/runtime/wal: none`));
  }
});

test("a locked or missing workspace is named as the user would type it", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-paths-named-ws-");
  t.after(cleanup);
  const env = envFor(dir);
  const cli = (...args: string[]) => runCli(["--sdd", "w/.sdd", ...args], { cwd: dir, env });
  assert.equal((await cli("init")).code, 0);
  assert.equal((await cli("task", "add", "slow", "--command", "sleep 30")).code, 0);
  const started = await cli("start", "--detach", "--json");
  assert.equal(started.code, 0, started.stderr);
  try {
    for (const cmd of [
      ["start", "--until-idle"],
      ["start", "--detach"],
      ["start", "--until-idle", "--archive-to", "arch", "--plain"],
    ]) {
      const r = await cli(...cmd);
      assert.equal(r.code, 3, `${cmd.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^bernstein: workspace w\/\.sdd is locked by pid \d+/, cmd.join(" "));
    }
  } finally {
    // --force: the agent's `sleep 30` is only there to hold the lock; a drain would wait it out.
    assert.equal((await cli("stop", "--force")).code, 0);
  }

  mkdirSync(path.join(dir, "bare", ".sdd"), { recursive: true });
  for (const [sdd, message] of [
    ["bare/.sdd", /^bernstein: bare\/\.sdd is not a bernstein workspace \(no runtime\/\)/],
    ["none/.sdd", /^bernstein: no workspace at none\/\.sdd;/],
  ] as const) {
    const r = await runCli(["--sdd", sdd, "status"], { cwd: dir, env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, message, r.stderr);
  }
  // The project folder instead of its .sdd/: `bernstein init` there would make a second workspace.
  const project = await runCli(["--sdd", "w", "status"], { cwd: dir, env });
  assert.equal(project.code, 2);
  assert.equal(
    project.stderr,
    "bernstein: w is not a bernstein workspace, but its .sdd/ is: pass --sdd w/.sdd (or set BERNSTEIN_SDD to it)\n",
  );
  assert.equal(existsSync(path.join(dir, "w", "runtime")), false, "nothing written");
});

test("start's torn-tail repair and dr status's backup and archive are named as the user would type them", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-paths-named-repair-");
  t.after(cleanup);
  const env = envFor(dir);
  const cli = (...args: string[]) => runCli(["--sdd", "w/.sdd", ...args], { cwd: dir, env });
  assert.equal((await cli("init")).code, 0);
  assert.equal((await cli("start", "--until-idle")).code, 0);
  const walDir = path.join(dir, "w", ".sdd", "runtime", "wal");
  const run = readdirSync(walDir).find((n) => n.endsWith(".wal.jsonl"))!;
  rmSync(path.join(walDir, run.replace(/\.jsonl$/, ".closed")));
  appendFileSync(path.join(walDir, run), '{"seq":99,"torn');
  const repaired = await cli("start", "--until-idle");
  assert.equal(repaired.code, 0, repaired.stderr);
  assert.match(repaired.stderr, /moved to w\/\.sdd\/runtime\/wal\/run-\S+\.torn-/, repaired.stderr);

  assert.equal((await cli("dr", "backup", "--to", "backups", "--plain")).code, 0);
  assert.equal((await cli("dr", "archive", "--to", "arch", "--once", "--plain")).code, 0);
  const status = (await cli("dr", "status")).stdout;
  assert.match(status, /^Archive: +arch not running/m, status);
  assert.match(status, /^Backup: +backups \(/m, status);
  assert.match(status, /^RPO: .*\(WAL archive arch, /m, status);
});
