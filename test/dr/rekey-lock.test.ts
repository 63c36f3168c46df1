/**
 * One `dr rekey` per archive at a time (src/dr/rekey-lock.ts): a second rekey while the first is
 * held stopped inside its work exits 3 naming it and changes nothing; a verify meeting an archive
 * mid-rekey exits 3, not 5; a SIGKILLed rekey's lock and temp files do not outlive it.
 */
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, test } from "node:test";
import { journalPath } from "../../src/dr/age/header-journal.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { backupToFile } from "../../src/dr/backup.js";
import { rekeyArchive } from "../../src/dr/rekey.js";
import { rekeyLockPath, watchForRekey } from "../../src/dr/rekey-lock.js";
import { ExitCode } from "../../src/errors/errors.js";
import { envFor, runCli, scratchDir, spawnCli, waitFor } from "../helpers.js";
import { catalogueBackup } from "./support/catalogue.js";
import { makeSmallWorkspace } from "./support/workspace.js";

/** Whether `pid` is stopped (SIGSTOP): state `T` in /proc/<pid>/stat. */
const stopped = (pid: number): boolean => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
};

/** Stopped rekeys a failed test left; killed when it ends. */
const stoppedChildren = new Set<ChildProcess>();
after(() => {
  for (const c of stoppedChildren) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** A rekey that stops itself (SIGSTOP) at `point`, still holding its lock; resumed with SIGCONT. */
async function stoppedRekey(args: string[], env: Record<string, string | undefined>, point: string) {
  const first = spawnCli(args, { env: { ...env, BERNSTEIN_CRASH_AT: `dr_rekey:${point}:1:SIGSTOP` } });
  stoppedChildren.add(first.child);
  const pid = first.child.pid!;
  await waitFor(`the first rekey stopped at ${point}`, () => stopped(pid), { exited: first.done });
  return { ...first, pid };
}

test("two dr rekey runs of one .enc archive: the second exits 3 naming the first and changes nothing; only the first's new password opens it", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { password: "old-pass-1" });
    const pw = async (name: string, text: string): Promise<string> => {
      const f = path.join(dir, `${name}.pw`);
      await writeFile(f, `${text}\n`, { mode: 0o600 });
      return f;
    };
    const [old, alice, bob] = [
      await pw("old", "old-pass-1"),
      await pw("alice", "alice-pass-2"),
      await pw("bob", "bob-pass-3"),
    ];
    const rekey = ["dr", "rekey", "--sdd", ws.root, "--from", b.path, "--password-file", old];
    const first = await stoppedRekey([...rekey, "--new-password-file", alice], env, "after_rename");
    const bytes = await readFile(b.path);
    const second = await runCli([...rekey, "--new-password-file", bob], { env });
    assert.equal(second.code, ExitCode.LOCKED, second.stderr);
    assert.match(second.stderr, new RegExp(`is being rekeyed by pid ${first.pid} on `));
    assert.doesNotMatch(second.stdout + second.stderr, /re-encrypted with/);
    assert.ok((await readFile(b.path)).equals(bytes), "the second rekey changed nothing");

    first.child.kill("SIGCONT");
    const done = await first.done;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(existsSync(rekeyLockPath(b.path)), false, "the lock is released");
    for (const [file, code] of [
      [alice, 0],
      [old, ExitCode.BAD_PASSWORD],
      [bob, ExitCode.BAD_PASSWORD],
    ] as const) {
      const v = await runCli(["dr", "verify", "--from", b.path, "--password-file", file], { env });
      assert.equal(v.code, code, `${path.basename(file)}: ${v.stderr}`);
    }
  } finally {
    await cleanup();
  }
});

test("an .age archive mid-rekey (header written, not yet recorded): dr verify exits 3 naming the rekey, a second rekey exits 3 and changes nothing; once it finishes both keys open it", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 200_000 });
    const [a, b, c] = [
      await generateIdentityLine(false),
      await generateIdentityLine(false),
      await generateIdentityLine(false),
    ];
    const idA = path.join(dir, "id_a.txt");
    await writeFile(idA, `${a.identity}\n`, { mode: 0o600 });
    const idC = path.join(dir, "id_c.txt");
    await writeFile(idC, `${c.identity}\n`, { mode: 0o600 });
    const bk = await backupToFile(ws, path.join(dir, "ag.tar.gz"), { recipients: [a.recipient] });
    await catalogueBackup(ws, bk, [a.recipient], { split: true });
    const rekey = ["dr", "rekey", "--sdd", ws.root, "--from", bk.path, "--identity-file", idA];
    const verify = (id: string) =>
      runCli(["dr", "verify", "--sdd", ws.root, "--from", bk.path, "--identity-file", id], { env });

    const first = await stoppedRekey([...rekey, "--add-recipient", c.recipient], env, "after_header");
    const v = await verify(idA);
    assert.equal(v.code, ExitCode.LOCKED, v.stderr);
    assert.match(v.stderr, new RegExp(`is being rekeyed by pid ${first.pid} on .*; run again`));
    assert.doesNotMatch(v.stderr, /damaged/);

    const bytes = await readFile(bk.path);
    const journal = await readFile(journalPath(bk.path));
    const second = await runCli([...rekey, "--add-recipient", b.recipient], { env });
    assert.equal(second.code, ExitCode.LOCKED, second.stderr);
    assert.match(second.stderr, new RegExp(`is being rekeyed by pid ${first.pid} on `));
    assert.ok((await readFile(bk.path)).equals(bytes), "the archive is as the first rekey left it");
    assert.ok((await readFile(journalPath(bk.path))).equals(journal), "the first rekey's journal is its own");

    first.child.kill("SIGCONT");
    const done = await first.done;
    assert.equal(done.code, 0, done.stderr);
    for (const id of [idA, idC]) {
      const ok = await verify(id);
      assert.equal(ok.code, 0, ok.stderr);
    }
  } finally {
    await cleanup();
  }
});

test("a rekey SIGKILLed after its header journal: its lock is taken over (with a warning) by the next rekey, which rolls the journal forward and leaves no lock", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const [a, b] = [await generateIdentityLine(false), await generateIdentityLine(false)];
    const idA = path.join(dir, "id_a.txt");
    await writeFile(idA, `${a.identity}\n`, { mode: 0o600 });
    const bk = await backupToFile(ws, path.join(dir, "ag.tar.gz"), { recipients: [a.recipient] });
    await catalogueBackup(ws, bk, [a.recipient], { split: true });
    const rekey = ["dr", "rekey", "--sdd", ws.root, "--from", bk.path, "--identity-file", idA];
    const killed = await runCli([...rekey, "--add-recipient", b.recipient], {
      env: { ...env, BERNSTEIN_CRASH_AT: "dr_rekey:after_journal" },
    });
    assert.equal(killed.signal, "SIGKILL");
    assert.ok(existsSync(rekeyLockPath(bk.path)) && existsSync(journalPath(bk.path)));

    const again = await runCli([...rekey, "--add-recipient", b.recipient], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /rekey lock: took over stale lock of pid \d+ .*: process \d+ is not running/);
    assert.equal(existsSync(journalPath(bk.path)), false);
    assert.equal(existsSync(rekeyLockPath(bk.path)), false);
  } finally {
    await cleanup();
  }
});

test("the next rekey of an archive removes the temp files a dead rekey of it left, and keeps a live process's and another archive's", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { password: "old-pass-1" });
    const old = path.join(dir, "old.pw");
    await writeFile(old, "old-pass-1\n", { mode: 0o600 });
    const neu = path.join(dir, "new.pw");
    await writeFile(neu, "new-pass-2\n", { mode: 0o600 });
    const dead = spawnSync(process.execPath, [
      "-e",
      "process.stdout.write(String(process.pid))",
    ]).stdout.toString();
    const names = {
      deadArchive: `.bk.tar.gz.enc.tmp-${dead}-0badc0de`,
      deadSidecar: `.bk.tar.gz.enc.sha256.tmp-${dead}-0badc0df`,
      liveArchive: `.bk.tar.gz.enc.tmp-${process.pid}-0badc0e0`,
      otherArchive: `.other.tar.gz.enc.tmp-${dead}-0badc0e1`,
    };
    for (const n of Object.values(names)) await writeFile(path.join(dir, n), "partial");
    const r = await runCli(
      ["dr", "rekey", "--sdd", ws.root, "--from", b.path, "--password-file", old, "--new-password-file", neu],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    const left = await readdir(dir);
    assert.ok(!left.includes(names.deadArchive) && !left.includes(names.deadSidecar), left.join(" "));
    assert.ok(left.includes(names.liveArchive), "a live writer's temp file is kept");
    assert.ok(left.includes(names.otherArchive), "another archive's temp file is kept");
  } finally {
    await cleanup();
  }
});

test("watchForRekey: nothing to say about an archive left alone; exit 3 for one a rekey changed between the watch and the finding", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await makeSmallWorkspace(dir);
    const [a, b] = [await generateIdentityLine(false), await generateIdentityLine(false)];
    const bk = await backupToFile(ws, path.join(dir, "ag.tar.gz"), { recipients: [a.recipient] });
    await catalogueBackup(ws, bk, [a.recipient], { split: true });
    const watch = await watchForRekey(bk.path);
    assert.equal(await watch.busy(), undefined);
    await rekeyArchive(bk.path, { identities: [a.identity], add: [b.recipient], remove: [] }, ws);
    const busy = await watch.busy();
    assert.equal(busy?.exitCode, ExitCode.LOCKED);
    assert.match(busy.message, /was rekeyed \(or replaced\) while it was read; run again/);
  } finally {
    await cleanup();
  }
});

test("a catalogue backup mid-rekey read another way: dr verify/restore --latest --at its folder exit 3, dr list --check --deep finds it rekeying (exit 3), not damaged; once the rekey is done the check passes", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 200_000 });
    const [a, c] = [await generateIdentityLine(false), await generateIdentityLine(false)];
    const idA = path.join(dir, "id_a.txt");
    await writeFile(idA, `${a.identity}\n`, { mode: 0o600 });
    const cat = path.join(dir, "cat");
    const made = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to-dir", cat, "--recipient", a.recipient, "--json"],
      { env },
    );
    assert.equal(made.code, 0, made.stderr);
    const archive = (JSON.parse(made.stdout) as { path: string }).path;
    const rekey = ["dr", "rekey", "--sdd", ws.root, "--from", archive, "--identity-file", idA];
    const first = await stoppedRekey([...rekey, "--add-recipient", c.recipient], env, "after_header");

    for (const command of ["verify", "restore"]) {
      const target = path.join(dir, `restored-${command}`);
      const r = await runCli(
        [
          "dr",
          command,
          "--latest",
          "--at",
          cat,
          "--identity-file",
          idA,
          ...(command === "restore" ? ["--sdd", target, "--key-file", path.join(dir, "k", "audit.key")] : []),
        ],
        { env },
      );
      assert.equal(r.code, ExitCode.LOCKED, `${command}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`is being rekeyed by pid ${first.pid} on .*; run again`));
      assert.doesNotMatch(r.stderr, /damaged/);
      assert.equal(existsSync(target), false, "nothing restored");
    }
    const check = ["dr", "list", "--sdd", ws.root, "--at", cat, "--check", "--deep", "--identity-file", idA];
    const listed = await runCli([...check, "--json"], { env });
    assert.equal(listed.code, ExitCode.LOCKED, listed.stderr);
    const doc = JSON.parse(listed.stdout) as {
      ok: boolean;
      check: { status: string }[];
      content: { status: string; detail: string }[];
    };
    assert.equal(doc.ok, false);
    assert.ok(
      [...doc.check, ...doc.content].every((f) => f.status === "ok" || f.status === "rekeying"),
      listed.stdout,
    );
    assert.equal(doc.content[0]?.status, "rekeying", listed.stdout);
    assert.match(doc.content[0]!.detail, new RegExp(`is being rekeyed by pid ${first.pid} on `));
    const human = await runCli(check, { env });
    assert.equal(human.code, ExitCode.LOCKED, human.stderr);
    assert.match(
      human.stdout,
      /check NOT DONE: 1 backup\(s\) being rekeyed; check again once the rekey has finished/,
    );

    first.child.kill("SIGCONT");
    const done = await first.done;
    assert.equal(done.code, 0, done.stderr);
    const after = await runCli(check, { env });
    assert.equal(after.code, 0, after.stdout + after.stderr);
  } finally {
    await cleanup();
  }
});
