/**
 * The staging writer's worker is unref()'d (an abandoned extraction must not keep a process
 * alive) before its 'message' listener is attached. Neither order nor unref loses an answer: the
 * constructor runs to its end before any message can be delivered, and every wait for the
 * worker refs it. A process whose only work is the writer's therefore waits for the last batch's
 * answer: finish() resolves once every file is on disk, and a failure in the last batch is
 * reported, never an exit 0 with work outstanding (or exit 13, an await the loop abandoned).
 * An extraction that fits in one batch starts no worker: its files are written, and its failure
 * reported, the same way. Told that the archive is large, the writer starts its worker at once;
 * an archive that then fits one batch after all goes through that worker just as well.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { scratchDir } from "../helpers.js";

const child = path.join(import.meta.dirname, "support", "staging-writer-child.js");

function run(root: string, files: number, mode: "ok" | "collide", archiveBytes?: number) {
  mkdirSync(root, { recursive: true });
  const args = [child, root, String(files), mode, ...(archiveBytes ? [String(archiveBytes)] : [])];
  const r = spawnSync(process.execPath, args, {
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("a process that only writes a staging tree waits for the worker's last answer", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-staging-exit-");
  t.after(cleanup);
  // One file fills no batch and starts no worker; 3,000 fill several (the writer waits with
  // batches in flight on the worker).
  for (const [files, threads] of [
    [1, "0 worker threads"],
    [3000, "1 worker thread"],
  ] as const) {
    assert.deepEqual(
      run(path.join(dir, `ok-${files}`), files, "ok"),
      { code: 0, stdout: `finished: ${files} of ${files} files intact (${threads})\n`, stderr: "" },
      `${files} file(s)`,
    );
    assert.deepEqual(
      run(path.join(dir, `collide-${files}`), files, "collide"),
      { code: 0, stdout: `failed: EEXIST (${threads})\n`, stderr: "" },
      `${files} file(s), the last one failing`,
    );
  }
});

test("told the archive is larger than a batch, the writer starts its worker before the first file", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-staging-eager-");
  t.after(cleanup);
  for (const [archiveBytes, threads] of [
    [1000, "0 worker threads"],
    [64 << 20, "1 worker thread"],
  ] as const) {
    for (const files of [1, 3000]) {
      const expected = files === 1 ? threads : "1 worker thread";
      assert.deepEqual(
        run(path.join(dir, `ok-${archiveBytes}-${files}`), files, "ok", archiveBytes),
        { code: 0, stdout: `finished: ${files} of ${files} files intact (${expected})\n`, stderr: "" },
        `${files} file(s) of an archive of ${archiveBytes} bytes`,
      );
      assert.deepEqual(
        run(path.join(dir, `collide-${archiveBytes}-${files}`), files, "collide", archiveBytes),
        { code: 0, stdout: `failed: EEXIST (${expected})\n`, stderr: "" },
        `${files} file(s) of an archive of ${archiveBytes} bytes, the last one failing`,
      );
    }
  }
});
