/**
 * `bernstein dr ...` as a real child process: reference archives, the full-size bench workspace,
 * restore semantics, and bad inputs.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  PYTHON_REFERENCE,
  pythonReferenceFacts,
  canRunOnTerminal,
  makeBenchWorkspace,
  runCli,
  runCliOnTerminal,
  scratchDir,
  envFor,
} from "../helpers.js";
import { backupToFile } from "../../src/dr/backup.js";
import { restoreFromStream } from "../../src/dr/restore.js";
import { restoredMode, umaskOf } from "../../src/dr/restored-mode.js";
import { sha } from "./support/craft.js";
import { tryMountTmpfs } from "./support/tmpfs.js";
import { makeSmallWorkspace, snapshotTree } from "./support/workspace.js";

const REF = PYTHON_REFERENCE;
const expected = pythonReferenceFacts();

const filesLine = (out: string): number => Number(/Files: (\d+)/.exec(out)?.[1]);
/** Every file under a folder (recursively), relative. */
function listAll(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((d) => d.isFile())
    .map((d) =>
      path.relative(root, path.join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)),
    )
    .sort();
}

test("restores both Python reference archives byte for byte; dry-run and restore print Files: 15", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    // The fixture key file is committed with mode 0644; verify demands 0600, so copy it.
    const key = path.join(dir, "ref.key");
    await writeFile(key, await readFile(path.join(REF, "audit.key")), { mode: 0o600 });
    for (const [file, pw] of [
      [expected.backups.plain.file, undefined],
      [expected.backups.encrypted.file, expected.backups.encrypted.password],
    ] as const) {
      const from = path.join(REF, file);
      const pwArgs = pw ? ["--decrypt", "--password", pw] : [];
      const dry = await runCli(["dr", "restore", "--from", from, "--dry-run", ...pwArgs], { env });
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(filesLine(dry.stdout), expected.backups.plain.reported_file_count);
      assert.match(dry.stdout, /Dry run — listing contents of/);
      const target = path.join(dir, `r-${file}`, ".sdd");
      const r = await runCli(["dr", "restore", "--from", from, "--sdd", target, ...pwArgs], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(filesLine(r.stdout), expected.backups.plain.reported_file_count);
      for (const [rel, want] of Object.entries(expected.restored_files_sha256)) {
        if (rel === "manifest.json") continue; // kept out of .sdd/ (the reference's mistake)
        assert.equal(sha(await readFile(path.join(target, rel))), want, rel);
      }
      const restored = listAll(target).filter((f) => f !== path.join("runtime", "restored-from.json"));
      assert.deepEqual(
        restored,
        Object.keys(expected.restored_files_sha256)
          .filter((f) => f !== "manifest.json")
          .sort(),
      );
      const rec = JSON.parse(await readFile(path.join(target, "runtime", "restored-from.json"), "utf8"));
      assert.equal(rec.format, "reference");
      const v = await runCli(["dr", "verify", "--from", from, "--json", "--key-file", key, ...pwArgs], {
        env,
      });
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const rep = JSON.parse(v.stdout);
      assert.equal(rep.per_file_hashes, false);
      assert.ok(
        rep.checks.some((c: { name: string; status: string }) => c.name === "audit" && c.status === "ok"),
      );
      assert.ok(
        rep.checks.some(
          (c: { name: string; status: string }) => c.name === "wal run-golden" && c.status === "ok",
        ),
      );
    }
  } finally {
    await cleanup();
  }
});

test("full-size bench workspace (8,421 files): backup, dry-run, restore and verify all print Files: 8422; restored tree equals the source, modes included", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const sdd = makeBenchWorkspace(path.join(dir, "w"), { keyOut: path.join(dir, "key", "audit.key") });
    await chmod(path.join(sdd, "runtime", "task_graph.json"), 0o600);
    await chmod(path.join(sdd, "config", "conf-0.yaml"), 0o755);
    // Modes a 022 umask keeps (created with them) and one the restore masks (0666).
    const [m1, m2, m3] = readdirSync(path.join(sdd, "docs")).slice(0, 3);
    await chmod(path.join(sdd, "docs", m1!), 0o666);
    await chmod(path.join(sdd, "docs", m2!), 0o400);
    await chmod(path.join(sdd, "docs", m3!), 0o640);
    const before = snapshotTree(sdd);
    assert.equal(before.size, 8421);
    const archive = path.join(dir, "b.tar.gz");
    const env2 = { ...env, BERNSTEIN_DR_PASSWORD: "pw" };
    const dryBackup = await runCli(["dr", "backup", "--to", archive, "--dry-run", "--sdd", sdd], { env });
    assert.equal(dryBackup.code, 0, dryBackup.stderr);
    assert.equal(filesLine(dryBackup.stdout), 8422);
    assert.ok(!existsSync(archive), "dry-run writes nothing");
    const p = await runCli(["dr", "backup", "--to", archive, "--sdd", sdd], { env });
    assert.equal(p.code, 0, p.stderr);
    assert.equal(filesLine(p.stdout), 8422);
    assert.match(
      p.stdout,
      /^Backing up .* to .*b\.tar\.gz\.\.\.\nBackup complete!\n {2}Path: .*\n {2}Size: \d+ bytes\n {2}Files: 8422\n {2}SHA256: [0-9a-f]{16}\.\.\.\n$/,
    );
    // The backup added runs/backups.jsonl and today's audit file; an encrypted one also carries the key.
    const b = await runCli(["dr", "backup", "--to", archive, "--encrypt", "--sdd", sdd], { env: env2 });
    assert.equal(b.code, 0, b.stderr);
    assert.equal(filesLine(b.stdout), 8422 + 2 + 1);
    const dry = await runCli(["dr", "restore", "--from", archive, "--dry-run"], { env });
    assert.equal(filesLine(dry.stdout), 8422);
    assert.match(dry.stdout, /\.\.\. and 8372 more/);
    const target = path.join(dir, "restored", ".sdd");
    const r = await runCli(["dr", "restore", "--from", archive, "--sdd", target], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(filesLine(r.stdout), 8422);
    const v = await runCli(
      ["dr", "verify", "--from", archive, "--key-file", path.join(dir, "key", "audit.key")],
      { env },
    );
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(filesLine(v.stdout), 8422);
    const after = snapshotTree(target);
    after.delete("runtime/restored-from.json");
    assert.equal(after.size, before.size);
    // Modes come back masked (src/dr/restored-mode.ts): 0666 as 0644 under a 022 umask.
    const umask = umaskOf(dir);
    for (const [rel, want] of before)
      assert.deepEqual(after.get(rel), { ...want, mode: restoredMode(want.mode, umask) }, rel);
    assert.equal(after.get(path.join("docs", m1!))!.mode & 0o022, 0, "0666 restored writable by others");
    // The encrypted one restores the same tree and installs no key over the existing one.
    const t2 = path.join(dir, "restored2", ".sdd");
    const r2 = await runCli(["dr", "restore", "--from", `${archive}.enc`, "--sdd", t2, "--json"], {
      env: env2,
    });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).audit_key.action, "unchanged");
    // backups.jsonl has one row per backup.
    const rows = readFileSync(path.join(sdd, "runs", "backups.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(rows.length, 2);
    assert.equal(rows[0].encrypted, false);
    assert.equal(rows[0].file_count, 8422);
    assert.equal(rows[1].encrypted, true);
  } finally {
    await cleanup();
  }
});

test("restore keeps the previous target, --no-keep removes it, a live lock refuses (exit 3) unless --force, the audit key travels", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const keyText = await readFile(keyFile, "utf8");
    const archive = path.join(dir, "b.tar.gz");
    const b = await runCli(
      ["dr", "backup", "--to", archive, "--encrypt", "--password", "pw", "--sdd", ws.root, "--json"],
      { env },
    );
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).audit_key_included, true);
    // New host: no key at the key path. Restore installs it (0600).
    const host2 = path.join(dir, "host2");
    const env2 = { ...env, BERNSTEIN_AUDIT_KEY_PATH: path.join(host2, "state", "audit.key") };
    const target = path.join(host2, ".sdd");
    const r = await runCli(
      ["dr", "restore", "--from", `${archive}.enc`, "--password", "pw", "--sdd", target, "--json"],
      { env: env2 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).audit_key.action, "installed");
    assert.equal(statSync(path.join(host2, "state", "audit.key")).mode & 0o777, 0o600);
    assert.equal(readFileSync(path.join(host2, "state", "audit.key"), "utf8"), keyText);
    const av = await runCli(["audit", "verify", "--sdd", target], { env: env2 });
    assert.equal(av.code, 0, av.stdout + av.stderr);
    // Restore again over it: previous target kept as .pre-restore-<ts>.
    await writeFile(path.join(target, "docs", "local-change.md"), "mine\n");
    const r2 = await runCli(
      ["dr", "restore", "--from", `${archive}.enc`, "--password", "pw", "--sdd", target, "--json"],
      { env: env2 },
    );
    assert.equal(r2.code, 0, r2.stderr);
    const kept = JSON.parse(r2.stdout).kept as string;
    assert.match(path.basename(kept), /^\.sdd\.pre-restore-\d{8}T\d{6}Z/);
    assert.ok(existsSync(path.join(kept, "docs", "local-change.md")));
    assert.ok(!existsSync(path.join(target, "docs", "local-change.md")));
    assert.ok(!existsSync(path.join(kept, "runtime", "bernstein.pid")));
    // --no-keep: nothing kept.
    const r3 = await runCli(
      [
        "dr",
        "restore",
        "--from",
        `${archive}.enc`,
        "--password",
        "pw",
        "--sdd",
        target,
        "--no-keep",
        "--json",
      ],
      { env: env2 },
    );
    assert.equal(r3.code, 0, r3.stderr);
    assert.equal(JSON.parse(r3.stdout).kept, undefined);
    assert.equal((await readdir(host2)).filter((n) => n.includes("pre-restore")).length, 1);
    // A different key already there: kept, with a warning and the backup's key saved for --key-file.
    const env3 = { ...env, BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "other.key") };
    await writeFile(path.join(dir, "other.key"), "a".repeat(64), { mode: 0o600 });
    const r4 = await runCli(
      [
        "dr",
        "restore",
        "--from",
        `${archive}.enc`,
        "--password",
        "pw",
        "--sdd",
        path.join(dir, "h3", ".sdd"),
      ],
      { env: env3 },
    );
    assert.equal(r4.code, 0, r4.stderr);
    assert.match(r4.stderr, /different audit key .* --key-file/);
    assert.equal(readFileSync(path.join(dir, "other.key"), "utf8"), "a".repeat(64));
    // A live process holds the target: exit 3, target untouched; --force goes ahead.
    const holder = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    try {
      const { processStartTime } = await import("../../src/workspace/lock.js");
      const os = await import("node:os");
      await writeFile(
        path.join(target, "runtime", "bernstein.pid"),
        JSON.stringify({
          pid: holder.pid,
          start_time: processStartTime(holder.pid!),
          hostname: os.hostname(),
          acquired_at: new Date().toISOString(),
        }),
      );
      const before = snapshotTree(target);
      const locked = await runCli(
        ["dr", "restore", "--from", `${archive}.enc`, "--password", "pw", "--sdd", target],
        { env: env2 },
      );
      assert.equal(locked.code, 3, locked.stderr);
      assert.match(locked.stderr, /in use by pid/);
      assert.deepEqual(snapshotTree(target), before);
      const forced = await runCli(
        [
          "dr",
          "restore",
          "--from",
          `${archive}.enc`,
          "--password",
          "pw",
          "--sdd",
          target,
          "--force",
          "--no-keep",
        ],
        { env: env2 },
      );
      assert.equal(forced.code, 0, forced.stderr);
    } finally {
      holder.kill("SIGKILL");
    }
  } finally {
    await cleanup();
  }
});

test("bad input: each a one-line message, its own exit code, nothing written, existing state untouched", async (t) => {
  const { dir, cleanup } = await scratchDir();
  const mounts: string[] = [];
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    // The plain backup and the existing target, in process (set-up; the encrypted backup's
    // sidecar is checked below, so that one is the CLI's).
    await backupToFile(ws, archive);
    assert.equal(
      (
        await runCli(["dr", "backup", "--to", archive, "--encrypt", "--password", "pw", "--sdd", ws.root], {
          env,
        })
      ).code,
      0,
    );
    const target = path.join(dir, "t", ".sdd");
    await restoreFromStream(createReadStream(archive), target, {
      auditKeyPath: env.BERNSTEIN_AUDIT_KEY_PATH,
    });
    const targetBefore = snapshotTree(target);
    const siblings = async () => (await readdir(path.dirname(target))).sort();
    const siblingsBefore = await siblings();
    const oneLine = (s: string) => {
      const lines = s.trim().split("\n");
      assert.equal(lines.length, 1, s);
      assert.doesNotMatch(s, /at .*\.js:\d+/);
    };
    const expectFail = async (
      args: string[],
      code: number,
      re?: RegExp,
      extraEnv: Record<string, string> = {},
    ) => {
      const r = await runCli(args, { env: { ...env, ...extraEnv } });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      oneLine(r.stderr);
      if (re) assert.match(r.stderr, re);
      assert.deepEqual(snapshotTree(target), targetBefore);
      assert.deepEqual(await siblings(), siblingsBefore, "nothing left beside the target");
      return r;
    };
    // --encrypt without a password: exit 2, nothing written.
    await expectFail(
      ["dr", "backup", "--to", path.join(dir, "x.tar.gz"), "--encrypt", "--sdd", ws.root],
      2,
      /needs a password/,
    );
    assert.ok(!existsSync(path.join(dir, "x.tar.gz.enc")) && !existsSync(path.join(dir, "x.tar.gz")));
    // --to in a missing folder: exit 6.
    await expectFail(
      ["dr", "backup", "--to", path.join(dir, "nope", "x.tar.gz"), "--sdd", ws.root],
      6,
      /does not exist/,
    );
    // --to an existing folder: exit 6, and the flag that writes into a folder is named.
    await expectFail(
      ["dr", "backup", "--to", dir, "--sdd", ws.root],
      6,
      /cannot write .*: it is a folder \(--to names the backup file; --to-dir .* writes a dated backup into it\)$/m,
    );
    // --from missing: exit 2.
    await expectFail(
      ["dr", "restore", "--from", path.join(dir, "missing.tar.gz"), "--sdd", target],
      2,
      /no such file/,
    );
    // Wrong password (exit 4): below, where the message also says the archive is intact.
    // Encrypted without a password: exit 2.
    await expectFail(["dr", "restore", "--from", `${archive}.enc`, "--sdd", target], 2, /encrypted/);
    // Truncated, flipped, not an archive: exit 5.
    const bytes = await readFile(archive);
    await writeFile(path.join(dir, "trunc.tar.gz"), bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await expectFail(
      ["dr", "restore", "--from", path.join(dir, "trunc.tar.gz"), "--sdd", target],
      5,
      /truncated/,
    );
    const flipped = Buffer.from(bytes);
    flipped[Math.floor(bytes.length / 2)] ^= 0x20;
    await writeFile(path.join(dir, "flip.tar.gz"), flipped);
    await expectFail(["dr", "restore", "--from", path.join(dir, "flip.tar.gz"), "--sdd", target], 5);
    const enc = await readFile(`${archive}.enc`);
    const encFlip = Buffer.from(enc);
    encFlip[enc.length - 100] = encFlip[enc.length - 100] === 0x41 ? 0x42 : 0x41;
    await writeFile(path.join(dir, "flip.enc"), encFlip);
    await expectFail(
      ["dr", "restore", "--from", path.join(dir, "flip.enc"), "--sdd", target],
      5,
      /altered or truncated/,
      { BERNSTEIN_DR_PASSWORD: "pw" },
    );
    // dr backup writes <archive>.sha256 (sha256sum format) beside the archive...
    assert.equal(
      readFileSync(`${archive}.enc.sha256`, "utf8"),
      `${sha(enc)}  ${path.basename(archive)}.enc\n`,
    );
    execFileSync("sha256sum", ["-c", "--quiet", `${path.basename(archive)}.enc.sha256`], { cwd: dir });
    // ...which tells a damaged salt (the same failure as a wrong password) from a wrong password.
    const saltFlip = Buffer.from(enc);
    saltFlip[3] ^= 0x01;
    const saltFile = path.join(dir, "salt.tar.gz.enc");
    await writeFile(saltFile, saltFlip);
    await expectFail(
      ["dr", "restore", "--from", saltFile, "--sdd", target],
      4,
      /wrong password, or the archive's first 71 bytes are damaged/,
      { BERNSTEIN_DR_PASSWORD: "pw" },
    );
    await writeFile(`${saltFile}.sha256`, `${sha(enc)}  salt.tar.gz.enc\n`);
    await expectFail(
      ["dr", "restore", "--from", saltFile, "--sdd", target],
      5,
      /damaged or altered: its sha256 is [0-9a-f]{64}, not [0-9a-f]{64} \(.*salt\.tar\.gz\.enc\.sha256\)/,
      { BERNSTEIN_DR_PASSWORD: "pw" },
    );
    await expectFail(["dr", "verify", "--from", saltFile], 5, /damaged or altered/, {
      BERNSTEIN_DR_PASSWORD: "pw",
    });
    await expectFail(
      ["dr", "restore", "--from", `${archive}.enc`, "--sdd", target],
      4,
      /wrong password \(the archive is intact/,
      { BERNSTEIN_DR_PASSWORD: "wrong" },
    );
    await writeFile(`${saltFile}.sha256`, "not a checksum\n");
    await expectFail(["dr", "restore", "--from", saltFile, "--sdd", target], 2, /not a sha256sum line/, {
      BERNSTEIN_DR_PASSWORD: "pw",
    });
    await writeFile(path.join(dir, "notes.txt"), "this is not an archive\n");
    await expectFail(
      ["dr", "restore", "--from", path.join(dir, "notes.txt"), "--sdd", target],
      5,
      /not a backup archive/,
    );
    await expectFail(["dr", "verify", "--from", path.join(dir, "notes.txt")], 5, /not a backup archive/);

    // A target so deep that the restore's own names pass PATH_MAX: exit 6, one line, nothing left.
    let deep = path.join(dir, "deep");
    while (deep.length < 4030) deep = path.join(deep, "d".repeat(Math.min(200, 4030 - deep.length)));
    await mkdir(deep, { recursive: true });
    const tooLong = await runCli(["dr", "restore", "--from", archive, "--sdd", path.join(deep, ".sdd")], {
      env,
    });
    assert.equal(tooLong.code, 6, tooLong.stderr);
    oneLine(tooLong.stderr);
    assert.match(tooLong.stderr, /a path is too long for this file system/);
    assert.deepEqual(await readdir(deep), []);

    // Read-only destination and full disk need tmpfs mounts (root in a container may not have them).
    const ro = path.join(dir, "ro");
    const small = path.join(dir, "small");
    await mkdir(ro);
    await mkdir(small);
    if (!tryMountTmpfs(ro, "ro,size=1m") || !tryMountTmpfs(small, "size=40k")) {
      t.diagnostic("skipped read-only and disk-full cases: cannot mount tmpfs here");
      return;
    }
    mounts.push(ro, small);
    await expectFail(
      ["dr", "backup", "--to", path.join(ro, "x.tar.gz"), "--sdd", ws.root],
      6,
      /not writable|read-only/,
    );
    await expectFail(
      ["dr", "backup", "--to", path.join(small, "x.tar.gz"), "--sdd", ws.root],
      6,
      /no space left/,
    );
    assert.deepEqual(await readdir(small), [], "no partial backup on the full disk");
    // A disk with room for the archive but not for its sidecar: the backup fails before the
    // archive is put in place (the sidecar is written first), so nothing appears there either.
    const page = 4096;
    let sizing = 0;
    for (let i = 0; ; i++) {
      const probe = path.join(dir, `sizing${i}.tar.gz`);
      assert.equal((await runCli(["dr", "backup", "--to", probe, "--sdd", ws.root], { env })).code, 0);
      sizing = (await stat(probe)).size;
      // Far enough from a page's end that the next backup's few bytes of other times fit the same pages.
      if (sizing % page !== 0 && sizing % page < page - 512) break;
      // Bytes gzip cannot shrink (a hash chain: the same on every run) move the archive's size.
      const pad = Array.from({ length: 22 }, (_, k) => createHash("sha256").update(`pad ${i} ${k}`).digest());
      await mkdir(path.join(ws.root, "docs"), { recursive: true });
      await writeFile(path.join(ws.root, "docs", `pad${i}.bin`), Buffer.concat(pad));
    }
    const exact = path.join(dir, "exact");
    await mkdir(exact);
    if (!tryMountTmpfs(exact, `size=${Math.ceil(sizing / page) * page}`))
      assert.fail("cannot mount a second tmpfs");
    mounts.push(exact);
    await expectFail(
      ["dr", "backup", "--to", path.join(exact, "x.tar.gz"), "--sdd", ws.root],
      6,
      /no space left/,
    );
    assert.deepEqual(await readdir(exact), [], "no archive without its sidecar");
    // Restore onto a full disk: the existing target there is untouched, no staging left.
    const smallTarget = path.join(small, ".sdd");
    await mkdir(path.join(smallTarget, "runtime"), { recursive: true });
    await mkdir(path.join(smallTarget, "backlog"));
    await writeFile(path.join(smallTarget, "runtime", "old.json"), "old\n");
    const full = await runCli(["dr", "restore", "--from", archive, "--sdd", smallTarget], { env });
    assert.equal(full.code, 6, full.stderr);
    oneLine(full.stderr);
    assert.match(full.stderr, /no space left/);
    assert.deepEqual(await readdir(small), [".sdd"]);
    assert.deepEqual((await readdir(smallTarget, { recursive: true })).sort(), [
      "backlog",
      "runtime",
      "runtime/old.json",
    ]);
  } finally {
    for (const m of mounts) {
      try {
        execFileSync("umount", [m]);
      } catch {
        // best effort
      }
    }
    await cleanup();
  }
});

test("dr drill --encrypt: backup, dry-run, restore, compare, doctor; records runs/drills.jsonl and an audit event", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    // Hand-made claimed/failed files have no decisions behind them: doctor would rightly object.
    await rm(ws.p("backlog", "claimed", "T-2.md"));
    await rm(ws.p("backlog", "failed", "T-3.md"));
    const keep = path.join(dir, "drill");
    const r = await runCli(
      ["dr", "drill", "--sdd", ws.root, "--encrypt", "--password", "pw", "--keep", keep, "--json"],
      { env },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.ok, true);
    assert.deepEqual(
      rep.steps.map((s: { name: string }) => s.name),
      ["backup", "dry-run", "restore", "compare", "doctor"],
    );
    assert.ok(rep.rto_ms >= 0);
    assert.equal(rep.audit_recorded, true);
    // Every file the backup counted is accounted for: compared, or named as not compared.
    const compared = rep.steps.find((s: { name: string }) => s.name === "compare").detail as string;
    assert.match(compared, /not compared: manifest\.json and the audit key/);
    assert.equal(Number(/^(\d+) files identical/.exec(compared)![1]) + 2, rep.file_count, compared);
    const rows = readFileSync(ws.p("runs", "drills.jsonl"), "utf8").trim().split("\n");
    assert.equal(rows.length, 1);
    const audit = (await readdir(ws.p("audit"))).map((f) => readFileSync(ws.p("audit", f), "utf8")).join("");
    assert.match(audit, /"event_type": "dr\.drill"/);
    assert.ok(existsSync(path.join(keep, "restored", ".sdd", "runtime", "wal", "run-test.wal.jsonl")));
    const human = await runCli(["dr", "drill", "--sdd", ws.root], { env });
    assert.equal(human.code, 0, human.stdout + human.stderr);
    assert.match(human.stdout, /RTO \(restore step\): \d+ ms\nDrill passed\./);
    // A tampered WAL in the live workspace is caught by the drill's doctor step (exit 1).
    const wal = ws.p("runtime", "wal", "run-test.wal.jsonl");
    const lines = readFileSync(wal, "utf8").split("\n");
    lines[2] = lines[2]!.replace("T-2", "T-X");
    await writeFile(wal, lines.join("\n"));
    const bad = await runCli(["dr", "drill", "--sdd", ws.root, "--json"], { env });
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.equal(JSON.parse(bad.stdout).ok, false);
  } finally {
    await cleanup();
  }
});

test("dr drill on a workspace that was itself restored passes; a failing drill under --quiet still says why", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const run = (args: string[]) => runCli(args, { cwd: dir, env });
    assert.equal((await run(["init"])).code, 0);
    assert.equal((await run(["task", "add", "one", "--command", "true"])).code, 0);
    assert.equal((await run(["start", "--until-idle"])).code, 0);
    assert.equal((await run(["dr", "backup", "--to", "b.tar.gz"])).code, 0);
    // The documented recovery: the broken tree set aside, the backup restored in its place.
    await rename(path.join(dir, ".sdd"), path.join(dir, ".sdd.broken"));
    assert.equal((await run(["dr", "restore", "--from", "b.tar.gz"])).code, 0);
    const drill = await run(["dr", "drill", "--json"]);
    assert.equal(drill.code, 0, drill.stdout + drill.stderr);
    const compare = JSON.parse(drill.stdout).steps.find((s: { name: string }) => s.name === "compare");
    assert.equal(compare.ok, true, compare.detail);
    assert.match(compare.detail, /not compared: manifest\.json \(the restore checks it\)$/);
    assert.equal(
      Number(/^(\d+) files identical/.exec(compare.detail)![1]) + 1,
      JSON.parse(drill.stdout).file_count,
    );
    assert.equal((await run(["dr", "drill", "--quiet"])).code, 0);

    // A real difference still fails the drill; --quiet prints nothing else, so it says why on stderr.
    const wal = (await readdir(path.join(dir, ".sdd", "runtime", "wal"))).find((f) =>
      f.endsWith(".wal.jsonl"),
    )!;
    const walFile = path.join(dir, ".sdd", "runtime", "wal", wal);
    const text = readFileSync(walFile, "utf8");
    assert.ok(text.includes('"title":"one"'));
    await writeFile(walFile, text.replace('"title":"one"', '"title":"ONE"'));
    const bad = await run(["dr", "drill", "--quiet"]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout, "");
    assert.match(bad.stderr, /^bernstein: dr drill failed: doctor: [^\n]+\n$/);
  } finally {
    await cleanup();
  }
});

test("off-site hook: --to-dir writes a catalogue backup, --latest --at reads it back (restore and verify)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const cat = path.join(dir, "catalogue");
    const b = await runCli(
      ["dr", "backup", "--to-dir", cat, "--encrypt", "--password", "pw", "--sdd", ws.root, "--json"],
      { env },
    );
    assert.equal(b.code, 0, b.stderr);
    const made = JSON.parse(b.stdout);
    assert.match(path.basename(made.path), /^bernstein-backup-\d{8}T\d{6}Z\.tar\.gz\.enc$/);
    assert.equal(made.verified, true);
    const dry = await runCli(["dr", "restore", "--latest", "--at", cat, "--dry-run", "--password", "pw"], {
      env,
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(filesLine(dry.stdout), made.file_count);
    const v = await runCli(
      ["dr", "verify", "--latest", "--at", cat, "--password", "pw", "--key-file", keyFile, "--json"],
      { env },
    );
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const r = await runCli(
      ["dr", "restore", "--latest", "--at", cat, "--password", "pw", "--sdd", path.join(dir, "r", ".sdd")],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(filesLine(r.stdout), made.file_count);
    const none = await runCli(["dr", "restore", "--sdd", path.join(dir, "r", ".sdd")], { env });
    assert.equal(none.code, 2);
  } finally {
    await cleanup();
  }
});

test("a terminal gets a progress bar on stderr for backup, restore and verify; --json and pipes get none", async (t) => {
  if (!canRunOnTerminal()) {
    t.skip("no script(1) to give the CLI a terminal");
    return;
  }
  const { dir, cleanup } = await scratchDir();
  try {
    const env = { ...envFor(dir), BERNSTEIN_DR_PASSWORD: "pw" };
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    const onTerminal = async (...args: string[]): Promise<string> => {
      const r = await runCliOnTerminal(args, { env });
      assert.equal(r.code, 0, r.output);
      return r.output;
    };
    const backup = await onTerminal(
      "--sdd",
      ws.root,
      "dr",
      "backup",
      "--to",
      archive,
      "--encrypt",
      "--verify",
    );
    // Each phase is drawn (at 10 frames a second a short phase may not show its end); the last
    // frame of each bar is its end.
    assert.match(backup, /hashing \[[#-]+\] \d+%/);
    assert.match(backup, /archiving \[#+\] 100%/);
    assert.match(backup, /reading back \[#+\] 100%/);
    assert.match(backup, /Backup complete!/);
    const from = `${archive}.enc`;
    const restored = await onTerminal(
      "--sdd",
      path.join(dir, "r", ".sdd"),
      "dr",
      "restore",
      "--from",
      from,
      "--decrypt",
    );
    assert.match(restored, /restoring \[#+\] 100%/);
    assert.match(await onTerminal("dr", "verify", "--from", from, "--decrypt"), /verifying \[#+\] 100%/);
    assert.match(
      await onTerminal("dr", "restore", "--from", from, "--decrypt", "--dry-run"),
      /reading \[#+\] 100%/,
    );

    // --json on a terminal, and a pipe without --json: the output has no bar.
    const json = await onTerminal("--json", "dr", "verify", "--from", from, "--decrypt");
    assert.doesNotMatch(json, /verifying|\[#/);
    assert.equal(JSON.parse(json.slice(json.indexOf("{"))).ok, true);
    const piped = await runCli(["dr", "verify", "--from", from, "--decrypt"], { env });
    assert.equal(piped.code, 0, piped.stderr);
    assert.doesNotMatch(piped.stdout + piped.stderr, /verifying|\[#/);
  } finally {
    await cleanup();
  }
});
