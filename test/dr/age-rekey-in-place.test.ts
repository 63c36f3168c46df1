/**
 * The size-independent `.age` rekey: headers padded with the filler stanza, rewritten in place
 * under a journal when the new header fits (copied when it does not), a crash at any byte of the
 * header write rolled forward by the next rekey, and `dr rekey --all` SIGKILLed and re-run.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { Decrypter } from "age-encryption";
import { AgeDecryptor } from "../../src/dr/age/decrypt.js";
import { AgeEncryptor } from "../../src/dr/age/encrypt.js";
import { fillerStanza, HEADER_BLOCK_BYTES, MIN_FILLER_BYTES } from "../../src/dr/age/filler.js";
import { journalPath, writeHeaderJournal } from "../../src/dr/age/header-journal.js";
import { sealHeader } from "../../src/dr/age/header.js";
import { AgeIdentityError, generateIdentityLine, wrapFileKey } from "../../src/dr/age/keys.js";
import { readAgeHeader, rekeyAgeFile, rekeyHeader } from "../../src/dr/age/rekey.js";
import { CHUNK_BYTES } from "../../src/dr/age/stream.js";
import { backupToFile } from "../../src/dr/backup.js";
import { readBackupLog, type BackupLogRow } from "../../src/dr/backup-log.js";
import { envFor, runCli, scratchDir, spawnCli, waitFor, withSeed } from "../helpers.js";
import { catalogueBackup } from "./support/catalogue.js";
import { makeSmallWorkspace } from "./support/workspace.js";

async function encrypt(plain: Buffer, recipients: string[]): Promise<Buffer> {
  const enc = await AgeEncryptor.create(recipients);
  return Buffer.concat([...enc.update(plain), ...enc.final()]);
}

async function decrypt(file: Buffer, identities: string[]): Promise<Buffer> {
  const dec = new AgeDecryptor(identities);
  const out: Buffer[] = [];
  for (let i = 0; i < file.length; i += 50_000) out.push(...(await dec.update(file.subarray(i, i + 50_000))));
  out.push(dec.final());
  return Buffer.concat(out);
}

const payloadOf = (b: Buffer): Buffer => b.subarray(b.indexOf(0x0a, b.indexOf("\n--- ") + 1) + 1);

test("the filler stanza has every length from the least up, and the library and our reader ignore it", async () => {
  const id = await generateIdentityLine(false);
  const fileKey = Buffer.alloc(16, 7);
  const stanza = await wrapFileKey(fileKey, [id.recipient]);
  for (let n = MIN_FILLER_BYTES; n < MIN_FILLER_BYTES + 300; n++) {
    const filler = fillerStanza(n);
    assert.equal(filler.length, n);
    const header = sealHeader(fileKey, stanza + filler);
    const d = new Decrypter();
    d.addIdentity(id.identity);
    assert.ok(Buffer.from(await d.decryptHeader(header)).equals(fileKey), `filler of ${n} bytes`);
  }
  assert.throws(() => fillerStanza(MIN_FILLER_BYTES - 1));
});

test("a new header reserves room (4 KiB for one recipient); recipients added in place keep size and inode; one that does not fit is copied and room is reserved again", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const first = await generateIdentityLine(false);
    const plain = Buffer.alloc(3 * CHUNK_BYTES + 11, 5);
    const file = path.join(dir, "b.tar.gz.age");
    await writeFile(file, await encrypt(plain, [first.recipient]));
    const { header } = await readAgeHeader(file);
    assert.equal(
      header.length,
      HEADER_BLOCK_BYTES,
      "one X25519 stanza plus 2 KiB of room, rounded up to 4 KiB",
    );
    const payload = payloadOf(await readFile(file));

    const added = [
      await generateIdentityLine(true),
      await generateIdentityLine(true),
      await generateIdentityLine(true),
    ];
    for (const [i, a] of added.entries()) {
      const before = statSync(file);
      const r = await rekeyAgeFile(file, {
        identities: [first.identity],
        recipients: [a.recipient],
        keepExisting: true,
      });
      const after = statSync(file);
      const fits = i < 2; // two hybrid stanzas (~1.6 kB each) fit in 4 KiB, a third does not
      assert.equal(r.in_place, fits, `hybrid recipient ${i + 1}`);
      assert.equal(after.ino === before.ino && after.size === before.size, fits);
      assert.equal(existsSync(journalPath(file)), false);
      const bytes = await readFile(file);
      assert.ok(payloadOf(bytes).equals(payload), "payload bytes untouched");
      assert.equal((await readAgeHeader(file)).header.length % HEADER_BLOCK_BYTES, 0);
      for (const id of [first, ...added.slice(0, i + 1)])
        assert.ok((await decrypt(bytes, [id.identity])).equals(plain));
      assert.equal(
        (bytes.toString("latin1").match(/\n-> bernstein\.filler /g) ?? []).length,
        1,
        "one filler",
      );
    }
    // After the copy there is room again: an X25519 recipient fits in place.
    const last = await generateIdentityLine(false);
    const r = await rekeyAgeFile(file, {
      identities: [first.identity],
      recipients: [last.recipient],
      keepExisting: true,
    });
    assert.equal(r.in_place, true);
  } finally {
    await cleanup();
  }
});

test("a crash at any byte of an in-place header write: the next rekey rolls the journal forward, never a torn archive", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await withSeed("REKEY_TORN_SEED", async (rand, seed) => {
      const old = await generateIdentityLine(false);
      const kept = await generateIdentityLine(false);
      const added = await generateIdentityLine(true);
      const plain = Buffer.alloc(2 * CHUNK_BYTES + 3, 9);
      const base = path.join(dir, "base.age");
      await writeFile(base, await encrypt(plain, [old.recipient, kept.recipient]));
      const { header: oldHeader, size } = await readAgeHeader(base);
      const plan = {
        identities: [kept.identity],
        recipients: [kept.recipient, added.recipient],
        keepExisting: false,
      };
      const { header: newHeader, inPlace } = await rekeyHeader(oldHeader, plan);
      assert.ok(inPlace);
      // Every torn state: the journal is whole (atomic replace), the header has its first `cut`
      // bytes new; `cut` = 0 and = length are the states before and after the header write.
      const cuts = [
        0,
        newHeader.length,
        ...Array.from({ length: 30 }, () => Math.floor(rand() * newHeader.length)),
      ];
      for (const cut of cuts) {
        const file = path.join(dir, `torn-${cut}.age`);
        await copyFile(base, file);
        await writeHeaderJournal(file, { size, oldHeader, newHeader });
        const bytes = await readFile(file);
        newHeader.copy(bytes, 0, 0, cut);
        await writeFile(file, bytes);

        // The next rekey (adding nobody new) first finishes the interrupted one.
        const r = await rekeyAgeFile(file, {
          identities: [added.identity],
          recipients: [],
          keepExisting: true,
        });
        assert.equal(r.in_place, true, `seed ${seed} cut ${cut}`);
        assert.equal(existsSync(journalPath(file)), false);
        const now = await readFile(file);
        assert.ok((await decrypt(now, [kept.identity])).equals(plain), `cut ${cut}: kept opens`);
        assert.ok((await decrypt(now, [added.identity])).equals(plain), `cut ${cut}: added opens`);
        await assert.rejects(
          decrypt(now, [old.identity]),
          AgeIdentityError,
          `cut ${cut}: removed one refused`,
        );
      }
    });
  } finally {
    await cleanup();
  }
});

test("dr rekey --all SIGKILLed at a seeded archive, then re-run: every archive opens with the new set, none with the removed recipient, none torn, the catalogue agrees", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await withSeed("REKEY_ALL_KILL_SEED", async (rand, seed) => {
      const env = envFor(dir);
      const { ws } = await makeSmallWorkspace(dir, { bigBytes: 1_000_000 });
      const [removed, kept, added] = [
        await generateIdentityLine(false),
        await generateIdentityLine(false),
        await generateIdentityLine(true),
      ];
      const keptFile = path.join(dir, "kept.txt");
      await writeFile(keptFile, `${kept.identity}\n`, { mode: 0o600 });
      const ARCHIVES = 8;
      for (let i = 0; i < ARCHIVES; i++) {
        const b = await backupToFile(ws, path.join(dir, `bk${i}.tar.gz`), {
          recipients: [removed.recipient, kept.recipient],
        });
        await catalogueBackup(ws, b, [removed.recipient, kept.recipient]);
      }
      const catalogueRows = async (): Promise<BackupLogRow[]> => {
        const rows: BackupLogRow[] = [];
        for await (const row of readBackupLog(ws)) rows.push(row);
        return rows;
      };
      const args = ["dr", "rekey", "--sdd", ws.root, "--all", "--identity-file", keptFile];
      args.push("--remove-recipient", removed.recipient, "--add-recipient", added.recipient, "--json");

      const killAfter = 1 + Math.floor(rand() * 3);
      process.stdout.write(
        `# seed ${seed}: SIGKILL once ${killAfter} archive(s) are catalogued as rekeyed\n`,
      );
      const first = spawnCli(args, { env });
      await waitFor(
        `${killAfter} rekeyed rows`,
        async () => (await catalogueRows()).length >= ARCHIVES + killAfter,
        {
          exited: first.done,
        },
      );
      first.child.kill("SIGKILL");
      assert.equal((await first.done).signal, "SIGKILL");

      const again = await runCli(args, { env });
      assert.equal(again.code, 0, again.stderr);
      const outcomes = JSON.parse(again.stdout).archives as { action: string }[];
      assert.ok(
        outcomes.filter((o) => o.action === "already-done").length >= killAfter,
        "the re-run resumed",
      );

      const newest = new Map<string, BackupLogRow>();
      for (const row of await catalogueRows()) newest.set(row.location, row);
      assert.equal(newest.size, ARCHIVES);
      for (const [location, row] of newest) {
        const bytes = await readFile(location);
        assert.equal(existsSync(journalPath(location)), false, `${location}: no journal left`);
        assert.deepEqual([...row.recipients!].sort(), [kept.recipient, added.recipient].sort());
        const sha = createHash("sha256").update(bytes).digest("hex");
        assert.equal(row.sha256, sha, `${location}: the catalogue names the file as it is`);
        assert.equal((await readFile(`${location}.sha256`, "utf8")).slice(0, 64), sha);
        const kPlain = await decrypt(bytes, [kept.identity]);
        assert.ok((await decrypt(bytes, [added.identity])).equals(kPlain));
        await assert.rejects(decrypt(bytes, [removed.identity]), AgeIdentityError);
      }
    });
  } finally {
    await cleanup();
  }
});
