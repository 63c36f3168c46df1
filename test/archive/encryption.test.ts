/**
 * Encrypted WAL archives through the CLI (real processes, a folder store): with a password
 * (PBKDF2 once per generation, Fernet segments) and with age recipients (a file key wrapped once
 * per generation), no plaintext in the store, wrong keys refused before anything is written, an
 * archiver restarted without its key refused, a killed one resuming its generation, and
 * encryption on by default where the configuration file names a password source.
 */
import assert from "node:assert/strict";
import { access, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { brotliDecompressSync } from "node:zlib";
import { readArchiveStatus } from "../../src/archive/health.js";
import { AgeDecryptor } from "../../src/dr/age/decrypt.js";
import { FernetDecryptor, deriveKey } from "../../src/dr/fernet.js";
import { runCli, scratchDir, spawnCli, waitFor } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  sha256File,
  walSegments,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const RUN = "run-secret";
/** A task title that must never appear in the store in clear. */
const MARKER = "Zebra-Payroll-Migration";

interface Record_ {
  generation: string;
  previous: string | null;
  cause: string;
  encrypted: boolean;
  encryption?: {
    scheme: string;
    kdf?: { name: string; salt: string; iterations: number };
    key_check?: string;
    age_header?: string;
  };
  compression?: string;
}

async function generations(store: string): Promise<Record_[]> {
  const names = (await readdir(store)).filter((n) => /^gen-[^.]+\.json$/.test(n)).sort();
  return Promise.all(
    names.map(async (n) => JSON.parse(await readFile(path.join(store, n), "utf8")) as Record_),
  );
}

/** The status says this archiver finished a cycle (its start alone writes the pid, with no generation yet). */
const cycledBy = (
  s: { pid: number; generation: string | null } | undefined,
  pid: number | undefined,
): boolean => s !== undefined && s.pid === pid && s.generation !== null;

/** Every object of the store, as bytes. */
async function objects(store: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const n of (await readdir(store)).sort())
    if (!n.startsWith(".")) out.set(n, await readFile(path.join(store, n)));
  return out;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** `dr restore --from ARCHIVE --latest` into a new folder; the restored WAL must equal the source's. */
async function restoreLatest(
  fx: ArchiveFixture,
  store: string,
  keyArgs: string[],
): Promise<{ restored: string; out: { generation: string; wal: Record<string, { seq: number }> } }> {
  const restored = path.join(fx.dir, "restored", ".sdd");
  const rr = await fx.cli(["--json", "dr", "restore", "--from", store, "--latest", ...keyArgs], restored);
  assert.equal(rr.code, 0, rr.stderr);
  assert.equal(
    await sha256File(path.join(restored, "runtime/wal", `${RUN}.wal.jsonl`)),
    await sha256File(fx.ws.walFile(RUN)),
  );
  return { restored, out: JSON.parse(rr.stdout) };
}

/** `dr archive --once` encrypted with the password in `pwFile`. */
const encryptedOnce = (store: string, pwFile: string): string[] => [
  "dr",
  "archive",
  "--to",
  store,
  "--once",
  "--encrypt",
  "--password-file",
  pwFile,
];

async function secretFile(dir: string, name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text + "\n", { mode: 0o600 });
  return file;
}

describe("dr archive encrypted", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    scratch = await scratchDir("bernstein-archenc-");
  });
  after(async () => scratch.cleanup());

  /** Decisions whose inputs carry MARKER, so every stream that holds them would show it in clear. */
  async function markedDecisions(fx: { ws: Parameters<typeof appendDecisions>[0] }, n: number, from: number) {
    const { WalWriter } = await import("../../src/wal/writer.js");
    const w = await WalWriter.open(fx.ws, RUN);
    try {
      for (let i = from; i < from + n; i++)
        await w.append({
          decision_type: "task_created",
          inputs: { task_id: `T-${i}`, title: MARKER },
          committed: true,
        });
    } finally {
      await w.close();
    }
  }

  it("password: round trip, no plaintext in the store, PBKDF2 parameters in the generation record only", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "pw"));
    const store = path.join(fx.dir, "store");
    const pw = await secretFile(fx.dir, "pw", "correct horse");
    await markedDecisions(fx, 5, 0);
    const args = encryptedOnce(store, pw);
    for (let i = 0; i < 3; i++) {
      if (i > 0) await markedDecisions(fx, 7, 5 + (i - 1) * 7);
      const r = await fx.cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    const gens = await generations(store);
    assert.equal(gens.length, 1, "one generation across three runs");
    const enc = gens[0]!.encryption!;
    assert.equal(enc.scheme, "fernet");
    assert.equal(enc.kdf!.name, "pbkdf2-hmac-sha256");
    assert.equal(enc.kdf!.iterations, 600_000);
    assert.equal(Buffer.from(enc.kdf!.salt, "base64").length, 16);

    const all = await objects(store);
    assert.ok(
      [...all.keys()].some((k) => k.endsWith(".snap-000000.tar.gz.enc")),
      [...all.keys()].join("\n"),
    );
    for (const [name, bytes] of all) {
      assert.ok(!bytes.includes(MARKER), `${name} holds the task title in clear`);
      assert.ok(!bytes.includes("decision_type"), `${name} holds WAL entries in clear`);
    }
    const segs = walSegments(all.keys(), RUN);
    assert.equal(segs.length, 2, segs.join("\n"));
    // A segment is a bare Fernet token (no salt before it) under the key derived once from the
    // record, of the segment's lines Brotli-compressed (the generation record says so).
    assert.equal(gens[0]!.compression, "br");
    const key = await deriveKey("correct horse", Buffer.from(enc.kdf!.salt, "base64"), enc.kdf!.iterations);
    for (const s of segs) {
      const stored = all.get(s)!;
      assert.equal(stored.subarray(0, 6).toString("latin1"), "gAAAAA", `${s} starts with its token`);
      const d = FernetDecryptor.withKey(key);
      const plain = brotliDecompressSync(Buffer.concat([await d.update(stored), d.final()])).toString("utf8");
      assert.ok(plain.includes(MARKER));
      assert.equal(
        Buffer.byteLength(plain),
        Number(/\.(\d{16})-(\d{16})\./.exec(s)![2]) - Number(/\.(\d{16})-/.exec(s)![1]),
      );
    }

    const { restored, out } = await restoreLatest(fx, store, ["--password-file", pw]);
    assert.equal(out.wal[RUN].seq, 18);
    for (const cmd of [
      ["wal", "verify"],
      ["audit", "verify"],
    ]) {
      const v = await fx.cli(cmd, restored);
      assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
    }
    // The snapshot is an ordinary encrypted backup: `dr restore` reads it.
    const snap = path.join(
      store,
      [...all.keys()].find((k) => k.endsWith(".tar.gz.enc"))!,
    );
    const plainRestore = await fx.cli(
      ["dr", "restore", "--from", snap, "--password-file", pw],
      path.join(fx.dir, "snap", ".sdd"),
    );
    assert.equal(plainRestore.code, 0, plainRestore.stderr);

    // --check: with the password every line is checked; without it, what names and indexes
    // carry, and it says so.
    const generation = (await generations(store))[0]!.generation;
    for (const [extra, unchecked] of [
      [["--password-file", pw], []],
      [[], [{ generation, scheme: "fernet" }]],
    ] as const) {
      const c = await fx.cli(["--json", "dr", "archive-list", "--from", store, "--check", ...extra]);
      assert.equal(c.code, 0, c.stdout + c.stderr);
      assert.deepEqual(JSON.parse(c.stdout).problems, []);
      assert.deepEqual(JSON.parse(c.stdout).lines_unchecked, unchecked);
    }
    const human = await fx.cli(["dr", "archive-list", "--from", store, "--check"]);
    assert.match(
      human.stdout,
      new RegExp(
        `^  ${generation}: its segments' lines were not checked, only their sha256 and links \\(encrypted with a password: give --password-file`,
        "m",
      ),
    );
  });

  it("wrong password: restore exits 4 with one line and writes nothing; an archiver restarted without it or with another is refused", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "wrong"));
    const store = path.join(fx.dir, "store");
    const pw = await secretFile(fx.dir, "pw", "right one");
    const bad = await secretFile(fx.dir, "bad", "wrong one");
    await markedDecisions(fx, 4, 0);
    assert.equal((await fx.cli(encryptedOnce(store, pw))).code, 0);
    await markedDecisions(fx, 3, 4);
    const before = await objects(store);

    const target = path.join(fx.dir, "restored", ".sdd");
    const r = await fx.cli(
      ["dr", "archive-restore", "--from", store, "--latest", "--password-file", bad],
      target,
    );
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /wrong password/);
    assert.equal(await exists(path.dirname(target)), false, "nothing written");
    const none = await fx.cli(["dr", "archive-restore", "--from", store, "--latest"], target);
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /encrypted with a password: give --password-file/);

    const plainAgain = await fx.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(plainAgain.code, 2, plainAgain.stderr);
    assert.match(plainAgain.stderr, /is encrypted \(password\).*or --plain/);
    assert.equal(plainAgain.stdout, "", "a refused run prints no 'Archiving ...' first");
    const other = await fx.cli(encryptedOnce(store, bad));
    assert.equal(other.code, 4, other.stderr);
    assert.deepEqual(
      [...(await objects(store)).keys()],
      [...before.keys()],
      "no object added by a refused archiver",
    );
    const c = await fx.cli(["dr", "archive-list", "--from", store, "--check", "--password-file", bad]);
    assert.equal(c.code, 4, c.stderr);
  });

  it("a killed encrypted archiver resumes the same generation; switching encryption on starts a new one", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "kill"));
    const store = path.join(fx.dir, "store");
    const pw = await secretFile(fx.dir, "pw", "kill me");
    await appendDecisions(fx.ws, RUN, 3);
    assert.equal((await fx.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    const { child, done } = spawnCli(
      [
        "--sdd",
        fx.sdd,
        "dr",
        "archive",
        "--to",
        store,
        "--interval",
        "10ms",
        "--encrypt",
        "--password-file",
        pw,
      ],
      { env: fx.env, cwd: fx.dir },
    );
    await waitFor(
      "a cycle of this archiver",
      async () => cycledBy(await readArchiveStatus(fx.sdd), child.pid),
      {
        exited: done,
      },
    );
    await appendDecisions(fx.ws, RUN, 6, 3);
    await waitFor(
      "an encrypted segment",
      async () => walSegments((await objects(store)).keys(), RUN).some((k) => k.endsWith("-8")),
      { exited: done },
    );
    child.kill("SIGKILL");
    assert.equal((await done).signal, "SIGKILL");
    const gens = await generations(store);
    assert.equal(gens.length, 2);
    assert.equal(gens[0]!.encrypted, false);
    assert.equal(gens[1]!.cause, "encryption turned on");
    assert.equal(gens[1]!.previous, gens[0]!.generation);

    await appendDecisions(fx.ws, RUN, 4, 9);
    const again = await fx.cli(["--json", ...encryptedOnce(store, pw)]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).generation, gens[1]!.generation);
    assert.equal((await generations(store)).length, 2, "no new generation on restart");
    const { out } = await restoreLatest(fx, store, ["--password-file", pw]);
    assert.equal(out.wal[RUN].seq, 12);
    assert.equal(out.generation, gens[1]!.generation);
  });

  it("recipients: a .tar.gz.age snapshot, segments that are age files with the record's header, restore with --identity-file", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "age"));
    const store = path.join(fx.dir, "store");
    const key = async (name: string) => {
      const file = path.join(fx.dir, name);
      const r = await runCli(["key", "generate", "-o", file], { env: fx.env });
      assert.equal(r.code, 0, r.stderr);
      return { file, recipient: r.stdout.trim() };
    };
    const k = await key("id.txt");
    const stranger = await key("other.txt");
    await markedDecisions(fx, 4, 0);
    const { child, done } = spawnCli(
      ["--sdd", fx.sdd, "dr", "archive", "--to", store, "--interval", "10ms", "--recipient", k.recipient],
      { env: fx.env, cwd: fx.dir },
    );
    await waitFor("the base snapshot", async () => cycledBy(await readArchiveStatus(fx.sdd), child.pid), {
      exited: done,
    });
    await markedDecisions(fx, 5, 4);
    await waitFor(
      "a segment up to seq 8",
      async () => walSegments((await objects(store)).keys(), RUN).some((s) => s.endsWith("-8")),
      {
        exited: done,
      },
    );
    child.kill("SIGTERM");
    assert.equal((await done).code, 143);

    const all = await objects(store);
    assert.ok(
      [...all.keys()].some((n) => n.endsWith(".snap-000000.tar.gz.age")),
      [...all.keys()].join("\n"),
    );
    for (const [name, bytes] of all)
      assert.ok(!bytes.includes(MARKER), `${name} holds the task title in clear`);
    const gens = await generations(store);
    assert.equal(gens.length, 1);
    assert.equal(gens[0]!.encryption!.scheme, "age");
    const header = Buffer.from(gens[0]!.encryption!.age_header!, "base64");
    const identity = (await readFile(k.file, "utf8")).split("\n").find((l) => l.startsWith("AGE-SECRET"))!;
    for (const seg of walSegments(all.keys(), RUN)) {
      const d = new AgeDecryptor([identity]);
      const compressed = Buffer.concat([
        ...(await d.update(Buffer.concat([header, all.get(seg)!]))),
        d.final(),
      ]);
      assert.ok(
        brotliDecompressSync(compressed).includes(MARKER),
        `${seg}: the record's header followed by it is a standard age file (of the lines Brotli-compressed)`,
      );
    }

    // The archiver kept its generation's file key (0600, never in a backup): a restart resumes.
    assert.equal((await stat(path.join(fx.sdd, "runtime", "archive-key.json"))).mode & 0o777, 0o600);
    await markedDecisions(fx, 2, 9);
    const again = await fx.cli([
      "--json",
      "dr",
      "archive",
      "--to",
      store,
      "--once",
      "--recipient",
      k.recipient,
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).generation, gens[0]!.generation);
    assert.ok(walSegments((await objects(store)).keys(), RUN).some((s) => s.endsWith(".s9-10")));
    const plan = await fx.cli(["--json", "dr", "backup", "--to", path.join(fx.dir, "b.tar.gz"), "--dry-run"]);
    assert.ok(
      (JSON.parse(plan.stdout) as { excluded: { path: string }[] }).excluded.some(
        (e) => e.path === "runtime/archive-key.json",
      ),
      "backups leave the kept key out",
    );

    const target = path.join(fx.dir, "restored", ".sdd");
    const wrong = await fx.cli(
      ["dr", "restore", "--from", store, "--latest", "--identity-file", stranger.file],
      target,
    );
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.equal(wrong.stderr.trim().split("\n").length, 1, wrong.stderr);
    assert.equal(await exists(path.dirname(target)), false, "nothing written");
    const rr = await fx.cli(["--json", "dr", "restore", "--from", store, "--latest"], target);
    assert.equal(rr.code, 2, rr.stderr);
    assert.match(rr.stderr, /--identity-file/);
    const ok = await runCli(["--sdd", target, "--json", "dr", "restore", "--from", store, "--latest"], {
      env: { ...fx.env, BERNSTEIN_DR_IDENTITY_FILE: k.file },
      cwd: fx.dir,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).wal[RUN].seq, 10);
    assert.equal(
      await sha256File(path.join(target, "runtime/wal", `${RUN}.wal.jsonl`)),
      await sha256File(fx.ws.walFile(RUN)),
    );
    const c = await fx.cli(["--json", "dr", "list", "--from", store, "--check", "--identity-file", k.file]);
    assert.equal(c.code, 0, c.stdout + c.stderr);
    const verifyWith = (identity: string) =>
      fx.cli(["--json", "dr", "verify", "--from", store, "--latest", "--identity-file", identity]);
    const v = await verifyWith(k.file);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(JSON.parse(v.stdout).wal[RUN].seq, 10);
    const wrongVerify = await verifyWith(stranger.file);
    assert.equal(wrongVerify.code, 4, wrongVerify.stderr);
    // Other recipients: a new generation (the kept key is not wrapped to them).
    const other = await fx.cli(["dr", "archive", "--to", store, "--once", "--recipient", stranger.recipient]);
    assert.equal(other.code, 0, other.stderr);
    const after = await generations(store);
    assert.equal(after.length, 2);
    assert.equal(after[1]!.cause, "the recipients changed");
  });

  it("encrypted by default once the configuration file names a password source; --plain to s3:// needs --i-know-it-is-plain", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "config"));
    const store = path.join(fx.dir, "store");
    const pw = await secretFile(fx.dir, "pw", "from the file");
    await writeFile(
      path.join(path.dirname(fx.sdd), "bernstein.yaml"),
      `backup:\n  password_file: ${path.join(fx.dir, "pw")}\n`,
    );
    await markedDecisions(fx, 3, 0);
    const r = await fx.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, / once, encrypted$/m);
    const gens = await generations(store);
    assert.equal(gens[0]!.encryption?.scheme, "fernet");
    for (const [name, bytes] of await objects(store)) assert.ok(!bytes.includes(MARKER), name);
    // A drill of the archive makes no backup: the file's password opens the archive, as for
    // dr verify --from; the file's encryption is not the user asking for --encrypt.
    const drill = await fx.cli(["--json", "dr", "drill", "--from", store, "--latest"]);
    assert.equal(drill.code, 0, drill.stderr);
    assert.equal(JSON.parse(drill.stdout).encrypted, true);
    const drillPw = await fx.cli(["dr", "drill", "--from", store, "--latest", "--password-file", pw]);
    assert.equal(drillPw.code, 0, drillPw.stderr);
    for (const flag of ["--encrypt", "--plain"]) {
      const typed = await fx.cli(["dr", "drill", "--from", store, "--latest", flag]);
      assert.equal(typed.code, 2, typed.stderr);
      assert.equal(
        typed.stderr,
        `bernstein: dr drill: ${flag} is for the drill's own backup; a drill --from an archive makes none\n`,
      );
    }
    // dr archive-compact opens the generation with the file's password too, as dr list --check does.
    const compacted = await fx.cli(["--json", "dr", "archive-compact", "--from", store]);
    assert.equal(compacted.code, 0, compacted.stderr);
    assert.deepEqual(JSON.parse(compacted.stdout).skipped, []);
    const s3 = await fx.cli(["dr", "archive", "--to", "s3://bucket/archive/", "--once", "--plain"]);
    assert.equal(s3.code, 2, s3.stderr);
    assert.match(s3.stderr, /--i-know-it-is-plain/);
    // An explicit --plain to a folder is a choice: a new, plain generation.
    const plain = await fx.cli(["dr", "archive", "--to", store, "--once", "--plain"]);
    assert.equal(plain.code, 0, plain.stderr);
    const after = await generations(store);
    assert.equal(after.length, 2);
    assert.equal(after[1]!.encrypted, false);
    assert.match(after[1]!.cause, /encryption turned off/);
  });
});
