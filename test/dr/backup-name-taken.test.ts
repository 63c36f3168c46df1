/**
 * `dr backup --to-dir`: the dated name is generated, so another backup taking it while this one is
 * written (two runs in the same second) is not an error and never a reason to replace: the backup
 * takes the next free second's name, and the other backup stays as it was.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdir, readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runBackupJob } from "../../src/dr/backup-job.js";
import { backupName } from "../../src/storage/catalogue.js";
import { scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("a generated --to-dir name taken by another backup meanwhile: the backup takes the next free second's", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const root = path.join(dir, "site");
    const now = new Date(Date.UTC(2026, 11, 7, 11, 49, 53, 250));
    const at = (s: number) => path.join(root, backupName(new Date(Date.UTC(2026, 11, 7, 11, 49, s)), false));
    const res = await runBackupJob(ws, {
      toDir: root,
      auditKeyPath: keyFile,
      record: false,
      now,
      // The other runs finish first: after our name was checked free, before ours is in place.
      onDestinationChecked: () => writeFileSync(at(53), "the other backup of 11:49:53\n"),
    });
    assert.equal(res.location, at(54));
    assert.equal(res.offsite?.record?.created_at, "2026-12-07T11:49:54.000Z");
    assert.equal(await readFile(at(53), "utf8"), "the other backup of 11:49:53\n");
    const names = (await readdir(root)).filter((n) => !n.startsWith("."));
    assert.deepEqual(names.sort(), [
      path.basename(at(53)),
      path.basename(at(54)),
      `${path.basename(at(54))}.json`,
    ]);
  } finally {
    await cleanup();
  }
});

test("a generated --to-dir name already taken when the backup starts (the clock pinned): the next free second's", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, keyFile } = await makeSmallWorkspace(dir);
    const root = path.join(dir, "site");
    const at = (s: number) => path.join(root, backupName(new Date(Date.UTC(2026, 11, 7, 11, 49, s)), false));
    await mkdir(root);
    for (const s of [10, 11]) writeFileSync(at(s), `the other backup of 11:49:${s}\n`);
    const res = await runBackupJob(ws, {
      toDir: root,
      auditKeyPath: keyFile,
      record: false,
      now: new Date(Date.UTC(2026, 11, 7, 11, 49, 10)),
    });
    assert.equal(res.location, at(12));
    for (const s of [10, 11]) assert.equal(await readFile(at(s), "utf8"), `the other backup of 11:49:${s}\n`);
  } finally {
    await cleanup();
  }
});
