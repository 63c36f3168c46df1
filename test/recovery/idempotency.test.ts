import assert from "node:assert/strict";
import { appendFile, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { idempotencyFile, IdempotencyStore } from "../../src/wal/idempotency.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

const hash = (i: number) => i.toString(16).padStart(64, "0");

test("markers are durable, looked up by <decision_type>:<entry_hash>, and never forgotten by compaction", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const store = await IdempotencyStore.open(ws);
    for (let i = 0; i < 500; i++) {
      await store.markExecuted({
        decision_type: "task_claimed",
        entry_hash: hash(i),
        run_id: "run-a",
        seq: i,
      });
    }
    await store.markExecuted({ decision_type: "task_claimed", entry_hash: hash(1) }); // no-op
    assert.ok(store.has("task_claimed", hash(499)));
    assert.ok(!store.has("task_completed", hash(499)));
    const first = JSON.parse((await readFile(idempotencyFile(ws), "utf8")).split("\n")[0]);
    assert.equal(first.key, `task_claimed:${hash(0)}`);

    // Duplicates written by an older writer are removed by compaction; every marker stays.
    await appendFile(idempotencyFile(ws), `{"key":"task_claimed:${hash(3)}"}\n`.repeat(5));
    const reopened = await IdempotencyStore.open(ws);
    assert.equal(reopened.size, 500);
    assert.equal(reopened.rows, 505);
    const result = await reopened.compact();
    assert.equal(result.after_rows, 500);
    const again = await IdempotencyStore.open(ws);
    assert.equal(again.size, 500);
    assert.equal(again.rows, 500);
    for (let i = 0; i < 500; i++) assert.ok(again.has("task_claimed", hash(i)));
    // Compact repeatedly (the Python store forgot markers after two rotations).
    for (let k = 0; k < 3; k++) await again.compact();
    assert.equal((await IdempotencyStore.open(ws)).size, 500);
  } finally {
    await cleanup();
  }
});

test("a torn last line is reported precisely, valid markers are kept, and nothing is deleted silently", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const file = idempotencyFile(ws);
    await writeFile(
      file,
      `{"key":"task_claimed:${hash(1)}"}\n{"key":"task_completed:${hash(2)}"}\n` +
        '{"key":"task_claimed:' +
        hash(3),
    );
    const store = await IdempotencyStore.open(ws);
    assert.equal(store.size, 2);
    assert.equal(store.problems.length, 1);
    assert.equal(store.problems[0].line, 3);
    assert.match(store.problems[0].message, /torn last line/);
    // The next marker goes on its own line; the fragment is still there.
    await store.markExecuted({ decision_type: "task_failed", entry_hash: hash(4) });
    const text = await readFile(file, "utf8");
    assert.ok(text.includes(`{"key":"task_claimed:${hash(3)}\n`));
    const reopened = await IdempotencyStore.open(ws);
    assert.equal(reopened.size, 3);
    assert.equal(reopened.problems[0].line, 3);
    // Compaction moves the fragment aside into a named file instead of dropping it.
    const res = await reopened.compact();
    assert.equal(res.rejected_lines, 1);
    assert.ok(res.rejected_file);
    assert.match(await readFile(res.rejected_file!, "utf8"), /task_claimed:0+3/);
    const clean = await IdempotencyStore.open(ws);
    assert.equal(clean.size, 3);
    assert.deepEqual(clean.problems, []);
    assert.ok((await readdir(ws.walDir)).some((n) => n.startsWith("idempotency.jsonl.rejected-")));
  } finally {
    await cleanup();
  }
});
