/**
 * A restore's peak memory must not grow with the size of what it inflates. Every inflated chunk
 * is a fresh Buffer that V8 frees only at a collection, and a well-compressed file yields many of
 * them for each byte read: a garbage budget that counted only the bytes read let them pile up
 * (a 64 MB log that compresses 90:1 took a restore from 73 MB to 103 MB). Two restores, each in
 * a fresh process with bin/bernstein's flags: one of a workspace whose log holds 1 MB, one whose
 * log holds 64 MB. Both are more than one batch of the staging writer, so both run its worker.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { launcherEnv, launcherFlags } from "../../src/workspace/launcher.js";
import { REPO_ROOT, scratchDir } from "../helpers.js";

const CHILD = path.join(REPO_ROOT, "dist", "test", "dr", "support", "restore-rss-child.js");
const SMALL_FILE_MB = 1;
const BIG_FILE_MB = 64;
/** What the big file may add to the peak: the budget's allowance, not the file's size. */
const MAX_GROWTH_MB = 12;

let scratch: Awaited<ReturnType<typeof scratchDir>>;
let small: string;
let big: string;

before(async () => {
  scratch = await scratchDir("bernstein-restore-memory-");
  const { workspace: ws } = await initWorkspace(path.join(scratch.dir, "w", ".sdd"));
  // A task log of one repeated line: it compresses about 90:1.
  const line = Buffer.from(
    `{"task_id":"T-1","state":"done","note":"lorem ipsum dolor sit amet"}\n`.repeat(16384),
  );
  const writeLog = (mb: number): void => {
    const fd = openSync(path.join(ws.root, "caching", "tasks.jsonl"), "w");
    for (let written = 0; written < mb * 1024 * 1024; written += line.length) writeSync(fd, line);
    closeSync(fd);
  };
  writeLog(SMALL_FILE_MB);
  small = path.join(scratch.dir, "small.tar.gz");
  await backupToFile(ws, small);
  writeLog(BIG_FILE_MB);
  big = path.join(scratch.dir, "big.tar.gz");
  await backupToFile(ws, big);
});
after(async () => scratch.cleanup());

/** Peak RSS of a fresh process restoring `archive`, in MB. */
function restorePeak(archive: string, name: string): Promise<number> {
  const target = path.join(scratch.dir, name, ".sdd");
  const child = spawn(process.execPath, [...launcherFlags(), CHILD, archive, target], {
    env: launcherEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`restore child exited ${code}: ${err}`));
      else resolve((JSON.parse(out) as { peak_rss_mb: number }).peak_rss_mb);
    }),
  );
}

test("a restore's peak memory does not grow with a well-compressed file's size", async () => {
  const without = await restorePeak(small, "small");
  const withFile = await restorePeak(big, "big");
  assert.ok(
    withFile - without <= MAX_GROWTH_MB,
    `peak RSS ${without.toFixed(1)} MB with a ${SMALL_FILE_MB} MB log, ${withFile.toFixed(1)} MB with a ${BIG_FILE_MB} MB one (at most ${MAX_GROWTH_MB} MB more)`,
  );
});
