/**
 * Ctrl-C and SIGTERM during `dr backup` and `dr restore`, sent to real child processes at a point
 * found by waiting for a condition (the temp file, the staging folder), never after a sleep: the
 * partial file is removed and the exit code is the shell's 130 / 143. And a backup into a folder
 * removes what killed backups (any name) left there. A `dr rekey` interrupted right after its
 * rename (its point of no return; BERNSTEIN_CRASH_AT sends the SIGINT at that instant) finishes,
 * and so does an `.age` rekey past its header journal (in place) or its rename (a copy).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { acquireLock } from "../../src/workspace/lock.js";
import { readBackupLog } from "../../src/dr/backup-log.js";
import { sha256OfFile } from "../../src/dr/sidecar.js";
import { runCli, scratchDir, spawnCli, waitFor, envFor } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";
import { backupToFile } from "../../src/dr/backup.js";
import { recipientFingerprint } from "../../src/dr/age/keys.js";
import { keyPair } from "./support/age-keys.js";
import { catalogueBackup } from "./support/catalogue.js";

/** The pid of a process that has exited (its temp files are a dead writer's). */
function deadPid(): number {
  return spawnSync(process.execPath, ["-e", ""]).pid!;
}

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} during a backup removes its temp file and exits ${code}`, async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const env = envFor(dir);
      const { ws } = await makeSmallWorkspace(dir);
      const out = path.join(dir, "out");
      await mkdir(out);
      // A live writer that never answers the snapshot pause: the backup, its temp file open,
      // waits for the answer (5 s), and the request file it writes says it is there.
      const lock = await acquireLock(ws, "test: a writer that does not answer");
      try {
        const { child, done } = spawnCli(
          ["--sdd", ws.root, "dr", "backup", "--to", path.join(out, "b.tar.gz")],
          { env },
        );
        const requests = ws.snapshotDir;
        await waitFor(
          "the backup's temp file and its pause request",
          () =>
            readdirSync(out).some((n) => n.startsWith(".b.tar.gz.tmp-")) &&
            existsSync(requests) &&
            readdirSync(requests).some((n) => n.includes(`-${child.pid}-`)),
          { exited: done },
        );
        child.kill(signal);
        const r = await done;
        assert.equal(r.code, code, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`^bernstein: interrupted by ${signal}; removed the partial backup `),
        );
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.deepEqual(readdirSync(out), [], "no temp file, no archive");
      } finally {
        await lock.release();
      }
    } finally {
      await cleanup();
    }
  });
}

test("a backup into a folder removes the temp files that killed backups of any name left there", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const out = path.join(dir, "out");
    await mkdir(out);
    const dead = deadPid();
    const leftovers = [
      `.bernstein-backup-20260101T000000Z.tar.gz.tmp-${dead}-0a0b0c0d`,
      `.nightly.tar.gz.enc.tmp-${dead}-11223344`,
      `.nightly.tar.gz.enc.sha256.tmp-${dead}-55667788`,
      `..bernstein-backup-20260101T000000Z.tar.gz.json.meta.json.tmp-${dead}-99aabbcc`,
    ];
    const kept = [
      `.other.tar.gz.tmp-${process.pid}-0a0b0c0d`, // a live writer's
      `.notes.txt.tmp-${dead}-0a0b0c0d`, // not a backup's
      "notes.txt",
    ];
    for (const n of [...leftovers, ...kept]) writeFileSync(path.join(out, n), "partial");
    const r = await runCli(["--sdd", ws.root, "dr", "backup", "--to", path.join(out, "today.tar.gz")], {
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(out).sort(), [...kept, "today.tar.gz", "today.tar.gz.sha256"].sort());
  } finally {
    await cleanup();
  }
});

test("dr schedule keeps its own SIGINT: the run in progress finishes and is kept (exit 0)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const out = path.join(dir, "catalogue");
    await mkdir(out);
    const lock = await acquireLock(ws, "test: a writer that does not answer");
    try {
      const { child, done } = spawnCli(
        ["--sdd", ws.root, "dr", "schedule", "--every", "1h", "--to-dir", out],
        {
          env,
        },
      );
      const requests = ws.snapshotDir;
      await waitFor(
        "the run's temp file and its pause request",
        () =>
          readdirSync(out).some((n) => n.includes(".tmp-")) &&
          existsSync(requests) &&
          readdirSync(requests).some((n) => n.includes(`-${child.pid}-`)),
        { exited: done },
      );
      child.kill("SIGINT");
      const r = await done;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /run 1 ok: /);
      assert.doesNotMatch(r.stderr, /interrupted/);
      assert.equal(readdirSync(out).filter((n) => /^bernstein-backup-.*\.tar\.gz$/.test(n)).length, 1);
    } finally {
      await lock.release();
    }
  } finally {
    await cleanup();
  }
});

test("SIGINT right after dr rekey renamed the re-encrypted .enc into place: the rekey finishes (sidecar, catalogue row, audit event) and says which password opens it, exit 130", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const out = path.join(dir, "out");
    await mkdir(out);
    const oldPw = path.join(dir, "old.pw");
    const newPw = path.join(dir, "new.pw");
    writeFileSync(oldPw, "old\n", { mode: 0o600 });
    writeFileSync(newPw, "new\n", { mode: 0o600 });
    const sdd = ["--sdd", ws.root];
    const b = await runCli(
      [...sdd, "dr", "backup", "--to", path.join(out, "bk.tar.gz"), "--encrypt", "--password-file", oldPw],
      { env },
    );
    assert.equal(b.code, 0, b.stderr);
    const archive = path.join(out, "bk.tar.gz.enc");
    const oldSha = await sha256OfFile(archive);

    const r = await runCli(
      [...sdd, "dr", "rekey", "--from", archive, "--password-file", oldPw, "--new-password-file", newPw],
      { env: { ...env, BERNSTEIN_CRASH_AT: "dr_rekey:after_rename:1:SIGINT" } },
    );
    assert.equal(r.code, 130, r.stderr);
    assert.equal(
      r.stderr,
      `bernstein: interrupted by SIGINT; the rekey had passed its point of no return (the rename) and finished it: ${archive} is re-encrypted: only the new password opens it\n`,
    );
    assert.equal(r.stdout, "");
    assert.deepEqual(readdirSync(out).sort(), ["bk.tar.gz.enc", "bk.tar.gz.enc.sha256"], "no temp file");
    const sha = await sha256OfFile(archive);
    assert.notEqual(sha, oldSha);
    assert.equal(readFileSync(`${archive}.sha256`, "utf8"), `${sha}  bk.tar.gz.enc\n`);
    const rows = [];
    for await (const row of readBackupLog(ws)) rows.push(row);
    assert.deepEqual(
      [rows.at(-1)!.location, rows.at(-1)!.sha256, rows.at(-1)!.rekeyed_from],
      [archive, sha, oldSha],
    );
    let audit = "";
    for (const f of await readdir(ws.auditDir, { recursive: true }))
      audit += await readFile(path.join(ws.auditDir, f), "utf8").catch(() => "");
    assert.ok(
      audit
        .split("\n")
        .some((l) => l.includes('"event_type": "dr.rekey"') && l.includes(`"sha256": "${sha}"`)),
      audit,
    );
    const verify = (pw: string) =>
      runCli([...sdd, "dr", "verify", "--from", archive, "--password-file", pw], { env });
    assert.equal((await verify(newPw)).code, 0);
    assert.equal((await verify(oldPw)).code, 4);
  } finally {
    await cleanup();
  }
});

/**
 * An `.age` backup catalogued with its recipient `a`, rekeyed by a CLI child that sends itself
 * SIGINT at `point` (right after its point of no return): the rekey finishes, exit 130.
 */
async function rekeyAgeInterrupted(point: string, add: (dir: string) => Promise<string[]>) {
  const { dir, cleanup } = await scratchDir();
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(dir);
  const a = await keyPair(dir, "a.txt", false, "main");
  const out = path.join(dir, "out");
  await mkdir(out);
  const b = await backupToFile(ws, path.join(out, "bk.tar.gz"), { recipients: [a.recipient] });
  await catalogueBackup(ws, b, [a.recipient], { split: true });
  const recipients = await add(dir);
  const r = await runCli(
    [
      "--sdd",
      ws.root,
      "dr",
      "rekey",
      "--from",
      b.path,
      "--identity-file",
      a.file,
      ...recipients.flatMap((x) => ["--add-recipient", x]),
    ],
    { env: { ...env, BERNSTEIN_CRASH_AT: `dr_rekey:${point}:1:SIGINT` } },
  );
  assert.equal(r.code, 130, r.stderr);
  assert.equal(r.stdout, "");
  const fps = [a.recipient, ...recipients].map(recipientFingerprint).join(", ");
  const rows = [];
  for await (const row of readBackupLog(ws)) rows.push(row);
  const row = rows.at(-1)!;
  assert.deepEqual(
    [row.location, row.recipients, row.rekeyed_from],
    [b.path, [a.recipient, ...recipients], b.sha256],
  );
  let audit = "";
  for (const f of await readdir(ws.auditDir, { recursive: true }))
    audit += await readFile(path.join(ws.auditDir, f), "utf8").catch(() => "");
  assert.ok(
    audit
      .split("\n")
      .some(
        (l) =>
          l.includes('"event_type": "dr.rekey"') &&
          l.includes(`"age_header_sha256": "${row.age_header_sha256}"`),
      ),
    audit,
  );
  const verify = (id: string) =>
    runCli(["--sdd", ws.root, "dr", "verify", "--from", b.path, "--identity-file", id], { env });
  return { dir, out, archive: b.path, row, stderr: r.stderr, fps, verify, cleanup };
}

test("SIGINT right after dr rekey of a .age wrote its header journal (in place): the rekey finishes (header, journal removed, catalogue row, audit event) and says which keys open it, exit 130", async () => {
  let c: string | undefined;
  const t = await rekeyAgeInterrupted("after_journal", async (dir) => {
    const k = await keyPair(dir, "c.txt", false, "main");
    c = k.file;
    return [k.recipient];
  });
  try {
    assert.equal(
      t.stderr,
      `bernstein: interrupted by SIGINT; the rekey had passed its point of no return (the header journal) and finished it: ${t.archive} is rekeyed: only the identities of recipients ${t.fps} open it\n`,
    );
    assert.equal(t.row.sha256, null, "in place: the header's hashes, the payload's carried over");
    assert.deepEqual(readdirSync(t.out), ["bk.tar.gz.age"], "no journal, no sidecar naming the old sha256");
    assert.equal((await t.verify(c!)).code, 0);
  } finally {
    await t.cleanup();
  }
});

test("SIGINT right after dr rekey of a .age renamed its copy into place (the new header did not fit): the rekey finishes (sidecar, catalogue row, audit event) and says which keys open it, exit 130", async () => {
  let pq: string | undefined;
  const t = await rekeyAgeInterrupted("after_rename", async (dir) => {
    // Three hybrid stanzas (~1.6 kB each) do not fit in the 4 KiB header: the archive is copied.
    const ks = [];
    for (const n of ["p1", "p2", "p3"]) ks.push(await keyPair(dir, `${n}.txt`, true, "main"));
    pq = ks[2]!.file;
    return ks.map((k) => k.recipient);
  });
  try {
    assert.equal(
      t.stderr,
      `bernstein: interrupted by SIGINT; the rekey had passed its point of no return (the rename) and finished it: ${t.archive} is rekeyed: only the identities of recipients ${t.fps} open it\n`,
    );
    assert.deepEqual(readdirSync(t.out).sort(), ["bk.tar.gz.age", "bk.tar.gz.age.sha256"], "no temp file");
    const sha = await sha256OfFile(t.archive);
    assert.equal(t.row.sha256, sha);
    assert.equal(readFileSync(`${t.archive}.sha256`, "utf8"), `${sha}  bk.tar.gz.age\n`);
    assert.equal((await t.verify(pq!)).code, 0);
  } finally {
    await t.cleanup();
  }
});
