/**
 * `dr list` and `dr verify` over age backups at a catalogue location: each archive's
 * recipients' fingerprints, archives still readable by a removed recipient, `--check --deep`
 * opening archives with the identities or password given (and saying which it could not open),
 * and the wrong-identity message naming the catalogued fingerprints or, without a catalogue,
 * the header's stanza counts.
 *
 * Every command form whose exit code or output is checked runs once as a real process; key
 * generation, the backups the later cases only start from, and repeats of a form already run
 * as a process run main() in this process (runMain).
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { recipientFingerprint } from "../../src/dr/age/keys.js";
import type { BackupLogRow } from "../../src/dr/backup-log.js";
import { archivesReadableByRemoved } from "../../src/dr/recipient-check.js";
import { envFor, runCli, runMain, scratchDir, waitFor } from "../helpers.js";
import { keyPair } from "./support/age-keys.js";
import { makeSmallWorkspace } from "./support/workspace.js";

interface ListedBackup {
  name: string;
  recipient_fingerprints: string[] | null;
}

/**
 * A workspace with two key pairs and one backup to both at a catalogue folder `bk`; the backup
 * made by a real process with `backup: "cli"`. `cli` runs a command as a process, `main` in this one.
 */
async function withAgeBackup(dir: string, backup: "cli" | "main") {
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(dir);
  const a = await keyPair(dir, "a.txt", false, "main");
  const b = await keyPair(dir, "b.txt", false, "main");
  const at = path.join(dir, "bk");
  const cli = (...args: string[]) => runCli([...args, "--sdd", ws.root], { env, cwd: dir });
  const main = (...args: string[]) => runMain([...args, "--sdd", ws.root], { env, cwd: dir });
  const made = await (backup === "cli" ? cli : main)(
    "dr",
    "backup",
    "--to-dir",
    at,
    "--recipient",
    a.recipient,
    "--recipient",
    b.recipient,
    "--json",
  );
  assert.equal(made.code, 0, made.stderr);
  return { env, ws, a, b, at, cli, main, ageFile: JSON.parse(made.stdout).path as string };
}

test("dr list shows each archive's recipients; --check warns about archives a recipient removed from the configuration can still read", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { a, b, at, cli, main } = await withAgeBackup(dir, "cli");
    const plain = await main("dr", "backup", "--to-dir", at);
    assert.equal(plain.code, 0, plain.stderr);

    const listed = await cli("dr", "list", "--at", at, "--json");
    assert.equal(listed.code, 0, listed.stderr);
    const backups = JSON.parse(listed.stdout).backups as ListedBackup[];
    const ageOne = backups.find((x) => x.name.endsWith(".tar.gz.age"))!;
    assert.deepEqual(ageOne.recipient_fingerprints, [a.recipient, b.recipient].map(recipientFingerprint));
    assert.equal(backups.find((x) => x.name.endsWith(".tar.gz"))!.recipient_fingerprints, null);
    const human = await cli("dr", "list", "--at", at);
    assert.match(human.stdout, new RegExp(`${ageOne.name}  \\[${recipientFingerprint(a.recipient)}, `));

    const clean = await cli("dr", "list", "--at", at, "--check", "--json");
    assert.equal(clean.code, 0, clean.stderr);
    assert.deepEqual(JSON.parse(clean.stdout).removed_recipients, []);

    // b is taken out of the configuration: the archive still opens with b's identity.
    await writeFile(path.join(dir, "bernstein.yaml"), `backup:\n  recipients: [${a.recipient}]\n`);
    const warned = await main("dr", "list", "--at", at, "--check", "--json");
    assert.equal(warned.code, 0, warned.stderr);
    assert.deepEqual(JSON.parse(warned.stdout).removed_recipients, [
      {
        location: path.join(at, ageOne.name),
        fingerprint: recipientFingerprint(b.recipient),
        reason: "not among the configuration's recipients",
      },
    ]);
    const warnedHuman = await cli("dr", "list", "--at", at, "--check");
    assert.match(
      warnedHuman.stdout,
      new RegExp(
        `WARNING +${ageOne.name} is still readable by removed recipient ${recipientFingerprint(b.recipient)}`,
      ),
    );
  } finally {
    await cleanup();
  }
});

test("without configured recipients, a recipient a rekey took out counts as removed for the archives that still list it", () => {
  const row = (location: string, fps: string[], extra: Partial<BackupLogRow> = {}): BackupLogRow => ({
    created_at: extra.created_at ?? "2026-01-01T00:00:00.000Z",
    location,
    sha256: "0".repeat(64),
    manifest_sha256: "",
    file_count: 1,
    size_bytes: 1,
    encrypted: true,
    verified: true,
    recipient_fingerprints: fps,
    ...extra,
  });
  const rows = [
    row("/bk/one.age", ["A", "B"]),
    row("/bk/two.age", ["A", "B"]),
    row("/bk/one.age", ["A"], { created_at: "2026-01-02T00:00:00.000Z", rekeyed_from: "0".repeat(64) }),
  ];
  const newest = new Map([
    ["/bk/one.age", rows[2]!],
    ["/bk/two.age", rows[1]!],
  ]);
  assert.deepEqual(archivesReadableByRemoved(rows, newest, ["/bk/one.age", "/bk/two.age"], undefined), [
    { location: "/bk/two.age", fingerprint: "B", reason: "removed by dr rekey of /bk/one.age" },
  ]);
  assert.deepEqual(archivesReadableByRemoved(rows.slice(0, 2), newest, ["/bk/two.age"], undefined), []);
});

test("dr list --check --deep opens .age and .enc archives with the keys given, says which it could not open, fails on damage; a wrong identity names the catalogued fingerprints (exit 4)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { env, ws, a, b, at, cli, main, ageFile } = await withAgeBackup(dir, "main");
    const other = await keyPair(dir, "other.txt", false, "main");
    const pwFile = path.join(dir, "pw.txt");
    await writeFile(pwFile, "correct horse\n", { mode: 0o600 });
    const enc = await main("dr", "backup", "--to-dir", at, "--encrypt", "--password-file", pwFile);
    assert.equal(enc.code, 0, enc.stderr);

    const content = (stdout: string) =>
      Object.fromEntries(
        (JSON.parse(stdout).content as { name: string; status: string; detail: string; key?: string }[]).map(
          (c) => [c.name.replace(/^.*\.tar\.gz/, ""), c],
        ),
      );
    const noKeys = await cli("dr", "list", "--at", at, "--check", "--deep", "--json");
    assert.equal(noKeys.code, 0, noKeys.stderr);
    const n = content(noKeys.stdout);
    assert.equal(n[".age"].status, "not-opened");
    assert.match(n[".age"].detail, /--identity-file/);
    assert.equal(n[".enc"].status, "not-opened");
    assert.match(n[".enc"].detail, /--password-file/);
    const statuses = Object.values(n).map((c) => c.status);
    const notOpened = statuses.filter((st) => st === "not-opened").length;
    const opened = statuses.length - notOpened;
    const human = await cli("dr", "list", "--at", at, "--check", "--deep");
    assert.equal(human.code, 0, human.stderr);
    assert.ok(
      human.stdout.includes(
        `\n${notOpened} archive(s) not opened deeply (no key for them)${opened ? `; the other ${opened} were` : ""}\n`,
      ),
      human.stdout,
    );
    const shallow = await cli("dr", "list", "--at", at, "--deep");
    assert.equal(shallow.code, 2, shallow.stderr);
    assert.match(shallow.stderr, /--deep goes with --check/);

    const keyed = await runMain(
      ["dr", "list", "--at", at, "--check", "--deep", "--json", "--password-file", pwFile, "--sdd", ws.root],
      { env: { ...env, BERNSTEIN_DR_IDENTITY_FILE: b.file }, cwd: dir },
    );
    assert.equal(keyed.code, 0, keyed.stderr);
    const k = content(keyed.stdout);
    assert.equal(k[".age"].status, "ok", k[".age"].detail);
    assert.equal(k[".enc"].status, "ok", k[".enc"].detail);

    const fps = [a.recipient, b.recipient].map(recipientFingerprint).join(", ");
    const wrongPw = path.join(dir, "wrong-pw.txt");
    await writeFile(wrongPw, "wrong horse\n", { mode: 0o600 });
    const wrongKeys = [
      "dr",
      "list",
      "--at",
      at,
      "--check",
      "--deep",
      "--identity-file",
      other.file,
      "--password-file",
      wrongPw,
    ];
    const wrongList = await main(...wrongKeys, "--json");
    assert.equal(wrongList.code, 0, wrongList.stderr);
    const w = content(wrongList.stdout);
    assert.match(w[".age"].detail, new RegExp(`it is encrypted to recipients ${fps}$`));
    // The audit chain's sha256 tells a wrong password from damage (was "wrong password, or the
    // archive's first 71 bytes are damaged (no .sha256 beside it ...)"), and the count says the
    // keys did not open them (was "no key for them").
    assert.match(
      w[".enc"].detail,
      /: wrong password \(the archive is intact: its sha256 matches the audit chain's record\)$/,
    );
    assert.deepEqual([w[".age"].key, w[".enc"].key], ["wrong", "wrong"]);
    const wrongHuman = await main(...wrongKeys);
    assert.match(wrongHuman.stdout, /\n2 archive\(s\) not opened deeply \(the keys given do not open them\)/);

    const wrong = await cli("dr", "verify", "--from", ageFile, "--identity-file", other.file);
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.match(
      wrong.stderr,
      new RegExp(`none of the 1 identities opens this archive; it is encrypted to recipients ${fps}\\n$`),
    );
    const elsewhere = await runMain(
      ["dr", "verify", "--from", ageFile, "--identity-file", other.file, "--sdd", path.join(dir, "none")],
      { env, cwd: dir },
    );
    assert.equal(elsewhere.code, 4, elsewhere.stderr);
    assert.match(elsewhere.stderr, /it is encrypted to recipients 2 X25519 stanzas\n$/);

    const bytes = await readFile(ageFile);
    bytes[bytes.length - 200] ^= 0x04;
    await writeFile(ageFile, bytes);
    const damaged = await runCli(
      ["dr", "list", "--at", at, "--check", "--deep", "--json", "--identity-file", a.file, "--sdd", ws.root],
      { env, cwd: dir },
    );
    assert.equal(damaged.code, 1, damaged.stderr);
    const d = content(damaged.stdout);
    assert.equal(d[".age"].status, "damaged");
    assert.match(d[".age"].detail, /damaged/);
    assert.equal(d[".enc"].status, "not-opened", "the others are still reported");
  } finally {
    await cleanup();
  }
});

test("dr rekey at a catalogue folder: the record names the new bytes and dr list --check stays clean, for a header rewrite and for a .enc converted to .age", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { env, a, b, at, cli, main, ageFile } = await withAgeBackup(dir, "main");
    const recordOf = async (file: string) =>
      JSON.parse(await readFile(`${file}.json`, "utf8")) as {
        name: string;
        sha256: string;
        size_bytes: number;
      };
    const before = await recordOf(ageFile);
    const c = await keyPair(dir, "c.txt", false, "main");
    const rekeyed = await cli(
      "dr",
      "rekey",
      "--from",
      ageFile,
      "--identity-file",
      a.file,
      "--add-recipient",
      c.recipient,
      "--json",
    );
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    const outcome = JSON.parse(rekeyed.stdout).archives[0] as { sha256: string; record_updated: boolean };
    assert.equal(outcome.record_updated, true);
    const after = await recordOf(ageFile);
    assert.notEqual(after.sha256, before.sha256, "a new header is new bytes");
    assert.equal(after.sha256, outcome.sha256);
    await assert.rejects(readFile(`${ageFile}.sha256`), "the record states the sha256, no sidecar beside it");
    const listed = await main("dr", "list", "--at", at, "--check", "--json");
    assert.equal(listed.code, 0, listed.stdout + listed.stderr);
    assert.ok(
      (JSON.parse(listed.stdout).check as { status: string }[]).every((f) => f.status === "ok"),
      listed.stdout,
    );

    // A password backup converted to age: the old name's record and expectation go with it.
    // Names are stamped to the second: made in the age backup's second, its .age would be taken.
    const stampOf = (name: string): string | undefined => /(\d{8}T\d{6}Z)/.exec(name)?.[1];
    const nowStamp = (): string =>
      new Date()
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z");
    await waitFor("a second after the age backup's", () => nowStamp() !== stampOf(ageFile));
    const pw = path.join(dir, "pw");
    await writeFile(pw, "a password for the test\n", { mode: 0o600 });
    const enc = await main("dr", "backup", "--to-dir", at, "--encrypt", "--password-file", pw, "--json");
    assert.equal(enc.code, 0, enc.stderr);
    const encFile = JSON.parse(enc.stdout).path as string;
    const converted = await runCli(
      [
        "dr",
        "rekey",
        "--from",
        encFile,
        "--password-file",
        pw,
        "--to-age",
        "--add-recipient",
        b.recipient,
        "--json",
      ],
      { env, cwd: dir },
    );
    assert.equal(converted.code, 0, converted.stderr);
    const ageOut = JSON.parse(converted.stdout).archives[0] as { path: string; sha256: string };
    assert.equal((await recordOf(ageOut.path)).sha256, ageOut.sha256);
    await assert.rejects(readFile(`${encFile}.json`), "the .enc's record went with it");
    const again = await main("dr", "list", "--at", at, "--check", "--json");
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const findings = JSON.parse(again.stdout).check as { name: string; status: string }[];
    assert.ok(
      findings.every((f) => f.status === "ok"),
      again.stdout,
    );
    assert.ok(findings.some((f) => f.name === path.basename(ageOut.path)));
    assert.deepEqual(JSON.parse(again.stdout).foreign_ignored, []);
  } finally {
    await cleanup();
  }
});
