/**
 * A staging tree is durable when finish() resolves, by either of its two ways: one syncfs(2) of
 * the file system (`sync -f`), or, where no `sync` can be run, an fsync of every file and every
 * folder it made. Seen from outside with strace (-f follows the `sync` child; -y names each
 * descriptor's file), around a process whose only work is a StagingWriter's. A large extraction
 * also has the file system written out while it goes on, not all at the end.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, realpathSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { scratchDir } from "../helpers.js";

const child = path.join(import.meta.dirname, "support", "staging-writer-child.js");
const FILES = 300;
/** 300 files of about 1,000 bytes fill more than one batch: the worker writes them. */
const THREADS = "1 worker thread";
const FOLDERS = ["", "d-0", "d-1", "d-2", "d-3"];

const strace = spawnSync("sh", ["-c", "command -v strace"], { encoding: "utf8" }).stdout.trim();
const traceable =
  strace !== "" && spawnSync(strace, ["-o", "/dev/null", "true"], { encoding: "utf8" }).status === 0;

/** Runs the writer under strace with `PATH`; returns what it printed and the traced sync calls. */
function traced(
  root: string,
  traceFile: string,
  PATH: string,
  mode = "nested",
  files = FILES,
  archiveBytes?: number,
): { stdout: string; calls: string[] } {
  mkdirSync(root, { recursive: true });
  const r = spawnSync(
    strace,
    [
      "-f",
      "-y",
      "-e",
      "trace=fsync,fdatasync,syncfs",
      "-o",
      traceFile,
      process.execPath,
      child,
      root,
      String(files),
      mode,
      ...(archiveBytes ? [String(archiveBytes)] : []),
    ],
    { encoding: "utf8", timeout: 120_000, env: { ...process.env, PATH } },
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(traceFile, "utf8").split("\n");
  // Calls on the thread pool overlap: strace splits them into "<unfinished ...>" and "resumed".
  assert.deepEqual(
    lines.filter((l) => /(fsync|fdatasync|syncfs)(\(| resumed>).* = -1 /.test(l)),
    [],
    "a sync call failed",
  );
  const calls = lines.filter((l) => / (fsync|fdatasync|syncfs)\(/.test(l));
  return { stdout: r.stdout, calls };
}

const synced = (calls: string[], call: string, file: string): boolean =>
  calls.some((l) => l.includes(` ${call}(`) && l.includes(`<${file}>`));

test(
  "finish() makes the staging tree durable: one syncfs, or an fsync of every file and folder without `sync`",
  { skip: traceable ? false : "strace cannot trace here" },
  async (t) => {
    const scratch = await scratchDir("bernstein-staging-durable-");
    t.after(scratch.cleanup);
    // strace names files by their real path.
    const dir = realpathSync(scratch.dir);
    const nameOf = (i: number): string => `d-${i % 4}/f-${String(i).padStart(6, "0")}`;

    const withSync = traced(path.join(dir, "syncfs"), path.join(dir, "syncfs.trace"), process.env.PATH ?? "");
    assert.equal(withSync.stdout, `finished: ${FILES} of ${FILES} files intact (${THREADS})\n`);
    const root1 = path.join(dir, "syncfs");
    assert.ok(
      synced(withSync.calls, "syncfs", root1),
      `no syncfs of ${root1}:\n${withSync.calls.join("\n")}`,
    );

    // 20 files fit in one batch, which finish() writes on the main thread before the same syncfs.
    const root3 = path.join(dir, "one-batch");
    const small = traced(root3, path.join(dir, "one-batch.trace"), process.env.PATH ?? "", "nested", 20);
    assert.equal(small.stdout, "finished: 20 of 20 files intact (0 worker threads)\n");
    assert.ok(synced(small.calls, "syncfs", root3), `no syncfs of ${root3}:\n${small.calls.join("\n")}`);

    // An empty PATH: `sync -f` cannot start, so the writer fsyncs each file and folder itself.
    const empty = path.join(dir, "no-commands");
    mkdirSync(empty);
    const root2 = path.join(dir, "fsync");
    const without = traced(root2, path.join(dir, "fsync.trace"), empty);
    assert.equal(without.stdout, `finished: ${FILES} of ${FILES} files intact (${THREADS})\n`);
    assert.equal(without.calls.filter((l) => l.includes(" syncfs(")).length, 0);
    const missing = [
      ...Array.from({ length: FILES }, (_, i) => path.join(root2, nameOf(i))),
      ...FOLDERS.map((f) => (f ? path.join(root2, f) : root2)),
    ].filter((p) => !synced(without.calls, "fsync", p));
    assert.deepEqual(missing, [], "files and folders finish() returned without fsyncing");
  },
);

test(
  "a large extraction is written out while it goes on: syncfs calls before the last one",
  { skip: traceable ? false : "strace cannot trace here" },
  async (t) => {
    const scratch = await scratchDir("bernstein-staging-write-out-");
    t.after(scratch.cleanup);
    const dir = realpathSync(scratch.dir);
    // 48 files of 1 MiB: three times the bytes between two early write-outs. Told the archive's
    // size, the writer starts its worker and its syncfs shell at once, and the last syncfs (after
    // the worker has stopped) goes to the same shell: no file is fsynced one by one.
    for (const archiveBytes of [undefined, 48 << 20]) {
      const root = path.join(dir, `big-${archiveBytes ?? "unsized"}`);
      const big = traced(root, `${root}.trace`, process.env.PATH ?? "", "big", 48, archiveBytes);
      assert.equal(big.stdout, "finished: 48 of 48 files intact (1 worker thread)\n");
      const syncfs = big.calls.filter((l) => l.includes(" syncfs(") && l.includes(`<${root}>`));
      assert.ok(syncfs.length >= 2, `syncfs of ${root} only at the end:\n${big.calls.join("\n")}`);
      const fsynced = big.calls.filter((l) => l.includes(" fsync(") && l.includes(`<${root}/`));
      assert.deepEqual(fsynced, [], "files fsynced one by one: the last syncfs failed");
    }
  },
);
