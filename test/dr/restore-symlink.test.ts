/**
 * An `.sdd` linked to a data volume: a restore through the link restores into the folder it
 * points to (on that volume), keeps the previous state beside that folder, says so, and leaves
 * the link as it is. A link whose folder's parent is missing (an unmounted volume) is refused
 * with exit 6 before anything is made.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstatSync, readlinkSync, statSync } from "node:fs";
import { mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { tryMountTmpfs } from "./support/tmpfs.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("dr restore --sdd LINK restores into the link's folder on its volume and keeps the link", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-restore-link-");
  // after() hooks run in the order added: the unmount must come before the scratch's removal.
  let unmount = (): void => {};
  t.after(async () => {
    unmount();
    await cleanup();
  });
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(path.join(dir, "src"));
  const backup = path.join(dir, "b.tar.gz");
  assert.equal((await runCli(["--sdd", ws.root, "dr", "backup", "--to", backup], { env })).code, 0);

  // The volume: its own file system where the test may mount one, so the device tells.
  const volume = path.join(dir, "volume");
  await mkdir(volume);
  if (tryMountTmpfs(volume, "size=64m")) unmount = () => execFileSync("umount", [volume]);
  const real = path.join(volume, "w1", ".sdd");
  assert.equal((await runCli(["--sdd", real, "init"], { env })).code, 0);
  await writeFile(path.join(real, "docs", "before.md"), "the state before the restore\n");
  const link = path.join(dir, "linksdd");
  await symlink(real, link);

  const r = await runCli(["--json", "dr", "restore", "--from", backup, "--sdd", "linksdd"], {
    env,
    cwd: dir,
  });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.target, real, "the restore went into the folder the link names");
  assert.match(doc.kept, new RegExp(`^${path.join(volume, "w1")}/\\.sdd\\.pre-restore-\\d{8}T\\d{6}Z$`));
  assert.ok(
    doc.warnings.includes(
      "linksdd is a symbolic link: restored into the folder it points to, volume/w1/.sdd (the link is kept)",
    ),
    r.stdout,
  );
  assert.ok(lstatSync(link).isSymbolicLink(), "the link stays a link");
  assert.equal(readlinkSync(link), real);
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.startsWith("linksdd")),
    ["linksdd"],
    "nothing beside it",
  );
  assert.equal(statSync(path.join(real, "runtime")).dev, statSync(volume).dev, "on the volume");
  assert.ok((await readdir(path.join(real, "docs"))).includes("run.sh"), "the backup's files");
  assert.ok((await readdir(path.join(doc.kept, "docs"))).includes("before.md"), "the previous state kept");

  // A link into a folder that is not there (the volume not mounted): refused, nothing made.
  const dangling = path.join(dir, "dangling");
  await symlink(path.join(dir, "unmounted", "w", ".sdd"), dangling);
  const refused = await runCli(["dr", "restore", "--from", backup, "--sdd", dangling], { env });
  assert.equal(refused.code, 6, refused.stderr);
  assert.match(
    refused.stderr,
    /^bernstein: cannot restore into \S+dangling: it is a symbolic link to \S+, whose folder \S+ does not exist \(is its volume mounted\?\); restoring would create it on the wrong disk\n$/,
  );
  assert.ok(!(await readdir(dir)).includes("unmounted"));
});
