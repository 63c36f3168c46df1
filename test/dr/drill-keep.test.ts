/**
 * `dr drill --keep DIR` where no folder can be: a file in its place, a file system that refuses
 * new entries (/proc), a read-only one. Each is exit 6 with one line naming `--keep DIR`, and
 * under --json the error document, before the drill backs anything up.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { tryMountTmpfs } from "./support/tmpfs.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("dr drill --keep onto a file, /proc or a read-only file system: exit 6, one line, JSON under --json", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-drill-keep-");
  // after() hooks run in the order added: the unmount must come before the scratch's removal.
  let unmount = (): void => {};
  t.after(async () => {
    unmount();
    await cleanup();
  });
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(dir);
  const file = path.join(dir, "afile");
  await writeFile(file, "mine\n");
  const cases: [string, RegExp][] = [
    [file, /: it is a file, not a folder$/],
    [path.join(file, "sub"), /: not a folder$/],
    ["/proc/x", /: the file system refuses to create it \(ENOENT\)$/],
  ];
  const readOnly = path.join(dir, "ro");
  await mkdir(readOnly);
  const mounted = tryMountTmpfs(readOnly, "ro,size=1m");
  if (mounted) {
    unmount = () => execFileSync("umount", [readOnly]);
    cases.push([path.join(readOnly, "x"), /: read-only file system$/]);
  }
  for (const [keep, why] of cases) {
    const r = await runCli(["--sdd", ws.root, "dr", "drill", "--keep", keep], { env });
    assert.equal(r.code, 6, `${keep}: ${r.stderr}`);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.split("\n").length, 2, r.stderr);
    assert.ok(r.stderr.startsWith(`bernstein: --keep ${keep}: `), r.stderr);
    assert.match(r.stderr.trimEnd(), why);
    const json = await runCli(["--sdd", ws.root, "--json", "dr", "drill", "--keep", keep], { env });
    assert.equal(json.code, 6, json.stderr);
    const doc = JSON.parse(json.stdout);
    assert.equal(doc.ok, false);
    assert.equal(doc.exit_code, 6);
    assert.match(doc.error, why);
  }
  assert.equal(await readFile(file, "utf8"), "mine\n", "the file is left as it was");
});
