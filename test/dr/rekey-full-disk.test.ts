/**
 * `dr rekey --to-age` of a password-encrypted archive on a disk with room for the new archive but
 * not for its `.sha256` sidecar: the command fails before anything is put in place, so the
 * folder holds the `.enc` archive and its sidecar as they were, and nothing else.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { keyPair } from "./support/age-keys.js";
import { tryMountTmpfs } from "./support/tmpfs.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const PAGE = 4096;
const pages = (bytes: number): number => Math.ceil(bytes / PAGE);

test("dr rekey --to-age on a disk too full for the new sidecar changes nothing", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-rekey-full-");
  let mounted: string | undefined;
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    const a = await keyPair(dir, "a.txt");
    const pw = path.join(dir, "pw");
    await writeFile(pw, "old\n", { mode: 0o600 });
    const rekey = (enc: string) =>
      runCli(
        ["dr", "rekey", "--from", enc, "--password-file", pw, "--to-age", "--add-recipient", a.recipient],
        {
          env,
        },
      );

    // The sizes, from the same archive converted in a roomy folder: an .age file's length follows
    // from its plaintext's and its recipients'.
    const sizing = path.join(dir, "sizing");
    await mkdir(sizing);
    const enc = await backupToFile(ws, path.join(sizing, "bk.tar.gz"), { password: "old" });
    const original = path.join(dir, "original");
    await mkdir(original);
    for (const f of await readdir(sizing)) await copyFile(path.join(sizing, f), path.join(original, f));
    const converted = await rekey(enc.path);
    assert.equal(converted.code, 0, converted.stderr);
    const ageBytes = (await stat(path.join(sizing, "bk.tar.gz.age"))).size;

    // Room for the .enc archive, its sidecar, the new .age archive and the rekey lock: not one
    // page more.
    const disk = path.join(dir, "disk");
    await mkdir(disk);
    const names = (await readdir(original)).sort();
    let used = 0;
    for (const f of names) used += pages((await stat(path.join(original, f))).size);
    if (!tryMountTmpfs(disk, `size=${(used + pages(ageBytes) + 1) * PAGE}`)) {
      t.skip("cannot mount a tmpfs here (needs root)");
      return;
    }
    mounted = disk;
    for (const f of names) await copyFile(path.join(original, f), path.join(disk, f));

    const full = await rekey(path.join(disk, path.basename(enc.path)));
    assert.notEqual(full.code, 0, full.stdout);
    assert.equal(full.stderr.trim().split("\n").length, 1, full.stderr);
    assert.match(full.stderr, /^bernstein: cannot write .*bk\.tar\.gz\.age: no space left on device$/m);
    assert.deepEqual((await readdir(disk)).sort(), names, "nothing new in the folder");
    for (const f of names)
      assert.ok(
        (await readFile(path.join(disk, f))).equals(await readFile(path.join(original, f))),
        `${f} is as it was`,
      );
  } finally {
    if (mounted) execFileSync("umount", [mounted]);
    await cleanup();
  }
});
