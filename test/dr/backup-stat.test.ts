/**
 * A backup stats each file once: the hash pass's fstat of the file it has open gives size, mode
 * and mtime. A stat by path in the walk as well would be a second system call for each of
 * thousands of files, CPU that `tar -czf` does not spend. Observed through the real `node:fs`
 * functions, counted on their way through.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { list } from "tar";
import { makeSmallWorkspace, snapshotTree } from "./support/workspace.js";
import { scratchDir } from "../helpers.js";

/** Runs `body` while every path given to fs.lstatSync / fs.statSync is recorded. */
async function recordingStats<T>(body: () => Promise<T>): Promise<{ result: T; stated: string[] }> {
  const stated: string[] = [];
  const { lstatSync, statSync } = fs;
  // (node:fs's own properties: assigned with Object.assign, which its read-only typings allow.)
  Object.assign(fs, {
    lstatSync: (p: fs.PathLike, o?: fs.StatSyncOptions) => {
      stated.push(String(p));
      return lstatSync(p, o);
    },
    statSync: (p: fs.PathLike, o?: fs.StatSyncOptions) => {
      stated.push(String(p));
      return statSync(p, o);
    },
  });
  // Named imports of node:fs (`import { lstatSync }`) follow only after this.
  syncBuiltinESMExports();
  try {
    return { result: await body(), stated };
  } finally {
    Object.assign(fs, { lstatSync, statSync });
    syncBuiltinESMExports();
  }
}

test("a backup stats no file by path: each file's size, mode and mtime come from its open descriptor", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await makeSmallWorkspace(dir);
    const archive = path.join(dir, "b.tar.gz");
    const { stated } = await recordingStats(() => backupToFile(ws, archive));
    const files = new Set([...snapshotTree(ws.root).keys()].map((rel) => path.join(ws.root, rel)));
    assert.ok(files.size > 10);
    assert.deepEqual(
      stated.filter((p) => files.has(p)),
      [],
      "files stat'ed by path during the backup",
    );
    // What the descriptor said is what the archive holds: every file's mode and mtime.
    const members = new Map<string, { mode?: number; mtime?: Date }>();
    await list({ file: archive, onReadEntry: (e) => members.set(e.path, { mode: e.mode, mtime: e.mtime }) });
    for (const rel of snapshotTree(ws.root).keys()) {
      const st = fs.lstatSync(path.join(ws.root, rel));
      const m = members.get(rel);
      assert.ok(m, rel);
      assert.equal(m.mode, st.mode & 0o7777, rel);
      assert.equal(m.mtime?.getTime(), Math.floor(st.mtimeMs / 1000) * 1000, rel);
    }
  } finally {
    await cleanup();
  }
});
