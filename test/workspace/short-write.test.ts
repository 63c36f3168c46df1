/**
 * A write() may write fewer bytes than asked (a disk filling up, a file-size limit) and say so
 * only in its count. Every file writer must write the rest or fail: an append, an object put
 * into a folder store, a backup archive. Made real with RLIMIT_FSIZE (`ulimit -f 1`: 1 KiB), past
 * which a write is cut short and the next one fails with EFBIG (Node ignores SIGXFSZ).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { scratchDir } from "../helpers.js";

const module = (rel: string): string => new URL(`../../src/${rel}`, import.meta.url).href;

/** Runs `script` (an ES module body) in a Node process whose files may not grow past 1 KiB. */
function underSizeLimit(script: string, cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "bash",
      ["-c", 'ulimit -f 1 && exec "$0" --input-type=module -e "$1"', process.execPath, script],
      {
        cwd,
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

const BIG = 3000; // past the 1 KiB limit in one write

test("a durable append cut short by the disk fails; it is never acknowledged as written", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-short-append-");
  t.after(cleanup);
  const r = await underSizeLimit(
    `import { durableAppendLines } from ${JSON.stringify(module("workspace/durable.js"))};
     await durableAppendLines("ledger.jsonl", "x".repeat(${BIG}) + "\\n");
     console.error("acknowledged");`,
    dir,
  );
  assert.notEqual(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /acknowledged/);
  assert.match(r.stderr, /EFBIG/);
  assert.ok((await stat(path.join(dir, "ledger.jsonl"))).size < BIG);
});

test("a folder store's put cut short by the disk fails and leaves no object", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-short-put-");
  t.after(cleanup);
  const r = await underSizeLimit(
    `import { Readable } from "node:stream";
     import { LocalStore } from ${JSON.stringify(module("storage/local-store.js"))};
     await new LocalStore("store").put("obj", Readable.from([Buffer.alloc(${BIG}, 7)]));
     console.error("acknowledged");`,
    dir,
  );
  assert.notEqual(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /acknowledged/);
  await assert.rejects(readFile(path.join(dir, "store", "obj")), { code: "ENOENT" });
});

test("a backup archive's sink cut short by the disk fails", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-short-sink-");
  t.after(cleanup);
  const r = await underSizeLimit(
    `import { open } from "node:fs/promises";
     import { Readable } from "node:stream";
     import { pipeline } from "node:stream/promises";
     import { durableFileSink } from ${JSON.stringify(module("dr/backup.js"))};
     const fh = await open("a.tar.gz", "w");
     await pipeline(Readable.from([Buffer.alloc(${BIG}, 7)]), durableFileSink(fh));
     console.error("acknowledged");`,
    dir,
  );
  assert.notEqual(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /acknowledged/);
  assert.match(r.stderr, /EFBIG/);
});
