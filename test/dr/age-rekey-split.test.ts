/**
 * `.age` archives recorded by header and payload apart (src/dr/age/split-hash.ts): written by
 * `dr backup`, carried over by a header-only rekey (which reads no payload byte), checked by
 * `dr list --check`, `dr verify` and restore; rows from before the split take one pass.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, test } from "node:test";
import { headerLength } from "../../src/dr/age/header.js";
import { backupToFile } from "../../src/dr/backup.js";
import { readBackupLog, type BackupLogRow } from "../../src/dr/backup-log.js";
import { rekeyArchive } from "../../src/dr/rekey.js";
import { backupsFromAudit } from "../../src/storage/audit-record.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { identityOf, keyPair } from "./support/age-keys.js";
import { catalogueBackup } from "./support/catalogue.js";
import { flip } from "./support/damage.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** The two ranges of an age file, as its own header says where the first ends. */
function ranges(bytes: Buffer): { header: Buffer; payload: Buffer } {
  const len = headerLength(bytes);
  return { header: bytes.subarray(0, len), payload: bytes.subarray(len) };
}

interface Split {
  sha256: string | null;
  age_header_bytes?: number;
  age_header_sha256?: string;
  age_payload_sha256?: string;
}

/** The split hashes of `s` are those of the file's header and payload. */
function assertSplitOf(s: Split, bytes: Buffer, what: string): void {
  const { header, payload } = ranges(bytes);
  assert.equal(s.age_header_bytes, header.length, `${what}: header bytes`);
  assert.equal(s.age_header_sha256, sha(header), `${what}: header sha256`);
  assert.equal(s.age_payload_sha256, sha(payload), `${what}: payload sha256`);
}

/**
 * Key pairs a and c, generated once for the file (`bernstein key generate`, two CLI runs) and
 * shared by the tests: no test changes a key file.
 */
let keysOnce: Promise<{ a: { file: string; recipient: string }; c: { file: string; recipient: string } }>;
let keysDir: { dir: string; cleanup: () => Promise<void> } | undefined;
function sharedKeys() {
  keysOnce ??= (async () => {
    keysDir = await scratchDir();
    return { a: await keyPair(keysDir.dir, "a.txt"), c: await keyPair(keysDir.dir, "c.txt") };
  })();
  return keysOnce;
}
after(() => keysDir?.cleanup());

/** A workspace, key pairs a and c, and one backup to a at the catalogue folder `bk`. */
async function withAgeBackup(dir: string) {
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(dir, { bigBytes: 300_000 });
  const { a, c } = await sharedKeys();
  const at = path.join(dir, "bk");
  const cli = (...args: string[]) => runCli([...args, "--sdd", ws.root], { env, cwd: dir });
  const made = await cli("dr", "backup", "--to-dir", at, "--recipient", a.recipient, "--json");
  assert.equal(made.code, 0, made.stderr);
  const file = JSON.parse(made.stdout).path as string;
  const newestRow = async (): Promise<BackupLogRow> => {
    let last: BackupLogRow | undefined;
    for await (const row of readBackupLog(ws)) if (row.location === file) last = row;
    return last!;
  };
  const record = async (): Promise<Split> => JSON.parse(await readFile(`${file}.json`, "utf8")) as Split;
  const check = async () => {
    const r = await cli("dr", "list", "--at", at, "--check", "--json");
    return { code: r.code, findings: JSON.parse(r.stdout).check as { status: string; detail: string }[] };
  };
  return { env, ws, a, c, at, cli, file, newestRow, record, check };
}

test("dr backup of an .age archive records its header and payload sha256 apart in the catalogue row, the record and the audit event", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, at, file, newestRow, record } = await withAgeBackup(dir);
    const bytes = await readFile(file);
    const row = await newestRow();
    assert.equal(row.sha256, sha(bytes), "the whole file's sha256 stays");
    assertSplitOf(row, bytes, "catalogue row");
    assertSplitOf(await record(), bytes, "record");
    const [expected] = await backupsFromAudit(ws, at);
    assert.equal(expected!.sha256, sha(bytes));
    assertSplitOf({ sha256: null, ...expected!.age }, bytes, "audit event");
    assert.equal(
      (await readFile(`${file}.sha256`, "utf8").catch(() => "")).slice(0, 64),
      "",
      "--to-dir: no sidecar",
    );
  } finally {
    await cleanup();
  }
});

test("a header-only rekey (add, then remove): the payload sha256 is carried over, the header's is new, sha256 null and no sidecar; dr list --check stays clean; restore opens it", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { a, c, at, cli, file, newestRow, record, check } = await withAgeBackup(dir);
    const first = await newestRow();
    const add = await cli(
      "dr",
      "rekey",
      "--from",
      file,
      "--identity-file",
      a.file,
      "--add-recipient",
      c.recipient,
      "--json",
    );
    assert.equal(add.code, 0, add.stderr);
    const out = JSON.parse(add.stdout).archives[0] as Split & { in_place: boolean; payload_read: boolean };
    assert.equal(out.in_place, true);
    assert.equal(out.payload_read, false, "the row's split hashes were carried over");
    assert.equal(out.sha256, null);
    const row = await newestRow();
    assert.equal(row.sha256, null, "nobody computed the whole file's sha256");
    assert.equal(row.age_payload_sha256, first.age_payload_sha256, "payload unchanged");
    assert.notEqual(row.age_header_sha256, first.age_header_sha256, "a new header");
    assertSplitOf(row, await readFile(file), "row after add");
    assertSplitOf(await record(), await readFile(file), "record after add");
    await assert.rejects(readFile(`${file}.sha256`), "no sidecar");
    assert.deepEqual(
      (await check()).findings.map((f) => f.status),
      ["ok"],
    );

    const rm = await cli(
      "dr",
      "rekey",
      "--from",
      file,
      "--identity-file",
      c.file,
      "--remove-recipient",
      a.recipient,
      "--json",
    );
    assert.equal(rm.code, 0, rm.stderr);
    const after = await newestRow();
    assert.equal(after.age_payload_sha256, first.age_payload_sha256);
    assert.notEqual(after.age_header_sha256, row.age_header_sha256);
    assertSplitOf(after, await readFile(file), "row after remove");
    const clean = await check();
    assert.equal(clean.code, 0);
    const listed = await cli("dr", "list", "--at", at, "--json");
    const [entry] = JSON.parse(listed.stdout).backups as Split[];
    assertSplitOf(entry!, await readFile(file), "dr list --json");
    const human = await cli("dr", "list", "--at", at);
    assert.match(human.stdout, new RegExp(` p:${after.age_payload_sha256!.slice(0, 10)} `), human.stdout);
    assert.match(human.stdout, /^p:… = sha256 of the payload/m);
    assert.deepEqual(
      clean.findings.map((f) => f.status),
      ["ok"],
    );
    const verified = await cli("dr", "verify", "--from", file, "--identity-file", c.file, "--json");
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const atLocation = await cli("dr", "verify", "--latest", "--at", at, "--identity-file", c.file, "--json");
    assert.equal(atLocation.code, 0, atLocation.stdout + atLocation.stderr);
    assert.equal(
      JSON.parse(atLocation.stdout).record_refreshed,
      true,
      "checked by its header and payload hashes",
    );
    const restored = await runCli(
      [
        "dr",
        "restore",
        "--from",
        file,
        "--identity-file",
        c.file,
        "--sdd",
        path.join(dir, "r", ".sdd"),
        "--json",
      ],
      { env: envFor(dir), cwd: dir },
    );
    assert.equal(restored.code, 0, restored.stderr);
  } finally {
    await cleanup();
  }
});

test("after a header-only rekey, a flipped payload byte, a flipped header byte and a truncation are each named by dr list --check and refused by restore (exit 5)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { env, a, c, cli, file, check } = await withAgeBackup(dir);
    const add = await cli(
      "dr",
      "rekey",
      "--from",
      file,
      "--identity-file",
      a.file,
      "--add-recipient",
      c.recipient,
    );
    assert.equal(add.code, 0, add.stderr);
    const good = await readFile(file);
    const headerEnd = headerLength(good);
    const cases: [string, Buffer, RegExp][] = [
      [
        "a payload byte flipped",
        flip(good, headerEnd + Math.floor((good.length - headerEnd) / 2)),
        /payload's sha256/,
      ],
      ["a header byte flipped", flip(good, 30), /header's sha256/],
      ["truncated", good.subarray(0, good.length - 100), /^size \d+, written \d+$/],
    ];
    for (const [what, bytes, named] of cases) {
      await writeFile(file, bytes);
      const { code, findings } = await check();
      assert.equal(code, 1, what);
      assert.equal(findings[0]!.status, "replaced", what);
      assert.match(findings[0]!.detail, named, what);
      const restore = await runCli(
        [
          "dr",
          "restore",
          "--from",
          file,
          "--identity-file",
          c.file,
          "--sdd",
          path.join(dir, `r-${what.length}`, ".sdd"),
        ],
        { env, cwd: dir },
      );
      assert.equal(restore.code, 5, `${what}: ${restore.stderr}`);
      assert.equal(restore.stderr.trim().split("\n").length, 1, restore.stderr);
    }
    // A character of c's own stanza changed (to another base64 character, so the header still
    // parses): without the record c would see a wrong key (4).
    const inStanza = Buffer.from(good);
    const at = good.indexOf("\n-> X25519 ", good.indexOf("\n-> X25519 ") + 1) + 20;
    inStanza[at] = inStanza[at] === 0x41 ? 0x42 : 0x41;
    await writeFile(file, inStanza);
    const stanza = await runCli(
      ["dr", "restore", "--from", file, "--identity-file", c.file, "--sdd", path.join(dir, "rs", ".sdd")],
      { env, cwd: dir },
    );
    assert.equal(stanza.code, 5, stanza.stderr);
    assert.match(stanza.stderr, /header's sha256 .* \(the record .*\.json\)/);
    await writeFile(file, good);
    assert.deepEqual(
      (await check()).findings.map((f) => f.status),
      ["ok"],
    );
  } finally {
    await cleanup();
  }
});

test("a row and record from before split hashes: the first rekey reads the payload once (sha256 and sidecar known), the next carries it over; dr list --check clean both times", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, a, c, cli, file, newestRow, check } = await withAgeBackup(dir);
    // Strip what this version adds, as an older version wrote them.
    const strip = (text: string): string =>
      text
        .split("\n")
        .map((l) =>
          l ? JSON.stringify(JSON.parse(l, (k, v: unknown) => (k.startsWith("age_") ? undefined : v))) : l,
        )
        .join("\n");
    const log = path.join(ws.runsDir, "backups.jsonl");
    await writeFile(log, strip(await readFile(log, "utf8")));
    const rec = JSON.parse(await readFile(`${file}.json`, "utf8")) as Record<string, unknown>;
    for (const k of Object.keys(rec)) if (k.startsWith("age_")) delete rec[k];
    await writeFile(`${file}.json`, JSON.stringify(rec, null, 2) + "\n");
    assert.equal((await newestRow()).age_payload_sha256, undefined);
    const payload = sha(ranges(await readFile(file)).payload);

    const once = await cli(
      "dr",
      "rekey",
      "--from",
      file,
      "--identity-file",
      a.file,
      "--add-recipient",
      c.recipient,
      "--json",
    );
    assert.equal(once.code, 0, once.stderr);
    const first = JSON.parse(once.stdout).archives[0] as Split & { payload_read: boolean };
    assert.equal(first.payload_read, true);
    assert.equal(first.sha256, sha(await readFile(file)), "read once: the whole sha256 is known");
    assertSplitOf(await newestRow(), await readFile(file), "row after the first rekey");
    assert.equal((await newestRow()).age_payload_sha256, payload);
    assert.deepEqual(
      (await check()).findings.map((f) => f.status),
      ["ok"],
    );

    const again = await cli(
      "dr",
      "rekey",
      "--from",
      file,
      "--identity-file",
      c.file,
      "--remove-recipient",
      a.recipient,
      "--json",
    );
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout).archives[0] as Split & { payload_read: boolean };
    assert.equal(second.payload_read, false);
    assert.equal(second.sha256, null);
    assert.equal((await newestRow()).age_payload_sha256, payload);
    assert.deepEqual(
      (await check()).findings.map((f) => f.status),
      ["ok"],
    );
  } finally {
    await cleanup();
  }
});

/** Bytes this process has read through read(2) and friends, page cache included (proc(5)). */
const bytesRead = (): number => Number(/^rchar: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"))![1]);

test("a header-only rekey of a catalogued archive reads none of its payload (this process's rchar)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 24 << 20 });
    const { a, c } = await sharedKeys();
    const b = await backupToFile(ws, path.join(dir, "bk.tar.gz"), { recipients: [a.recipient] });
    await catalogueBackup(ws, b, [a.recipient], { split: true });
    assert.ok(b.size_bytes > 24 << 20);
    const before = bytesRead();
    const r = await rekeyArchive(
      b.path,
      { identities: [await identityOf(a.file)], add: [c.recipient], remove: [] },
      ws,
    );
    const read = bytesRead() - before;
    assert.equal(r.in_place, true);
    assert.ok(read < 1 << 20, `the rekey read ${read} bytes of a ${b.size_bytes}-byte archive`);
    assertSplitOf({ sha256: null, ...r }, await readFile(b.path), "the outcome");
  } finally {
    await cleanup();
  }
});
