import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readWalEntries } from "../../src/wal/reader.js";
import { PYTHON_REFERENCE } from "../helpers.js";

const GOLDEN = path.join(PYTHON_REFERENCE, "workspace", ".sdd", "runtime", "wal", "run-golden.wal.jsonl");

/** How many descriptors of this process point at `file`. */
async function openCount(file: string): Promise<number> {
  const { readlink } = await import("node:fs/promises");
  let n = 0;
  for (const fd of await readdir("/proc/self/fd")) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
    if (target === file) n++;
  }
  return n;
}

test("a reader the consumer leaves early closes its file", async () => {
  const seqs: number[] = [];
  for await (const { entry } of readWalEntries(GOLDEN)) {
    seqs.push(entry.seq);
    if (seqs.length === 3) {
      assert.equal(await openCount(GOLDEN), 1, "the file is open while entries are handed out");
      break;
    }
  }
  assert.deepEqual(seqs, [0, 1, 2]);
  assert.equal(await openCount(GOLDEN), 0);
});

test("next() answers in order when called again before the last answer settled, and done after the end", async () => {
  const it = readWalEntries(GOLDEN);
  const first = await Promise.all(Array.from({ length: 45 }, () => it.next()));
  assert.deepEqual(
    first.map((r) => (r.done ? "done" : r.value.entry.seq)),
    [...Array.from({ length: 40 }, (_, i) => i), "done", "done", "done", "done", "done"],
  );
  assert.equal((await it.next()).done, true);
  assert.equal(await openCount(GOLDEN), 0);
});

test("a file that cannot be opened fails the first next() and then ends", async () => {
  const it = readWalEntries(path.join(PYTHON_REFERENCE, "no-such.wal.jsonl"));
  await assert.rejects(it.next(), /no such file/);
  assert.equal((await it.next()).done, true);
});
