/**
 * A `start` refused for a bad audit key leaves no WAL run behind, and a run without entries (a
 * crash right after its WAL was opened) never stays the newest: runs sort by the time in its id.
 */
import assert from "node:assert/strict";
import { chmod, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { listRuns } from "../../src/wal/reader.js";
import { newRunId } from "../../src/wal/writer.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("start refused for a mode-644 --key-file creates no run; status keeps the real newest run", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-refused-run-");
  try {
    assert.equal((await cli("start", "--until-idle")).code, 0);
    const before = (await listRuns(ws)).map((r) => r.run_id);
    assert.equal(before.length, 1);

    const key = path.join(dir, "loose.key");
    await writeFile(key, "x".repeat(64));
    await chmod(key, 0o644);
    const refused = await cli("start", "--until-idle", "--key-file", key);
    assert.equal(refused.code, 2, refused.stderr);
    assert.deepEqual(
      (await listRuns(ws)).map((r) => r.run_id),
      before,
      "no run left by the refusal",
    );
    const status = JSON.parse((await cli("status", "--json")).stdout) as {
      wal: { run_id: string; seq: number };
      orchestrator: { run_id: string };
    };
    assert.equal(status.wal.run_id, before[0]);
    assert.equal(status.orchestrator.run_id, before[0]);
    assert.ok(status.wal.seq >= 0);
  } finally {
    await cleanup();
  }
});

test("start --key-file in a folder that does not exist is refused: no key, no folder, no run", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-key-typo-");
  try {
    const before = await readdir(dir);
    const key = path.join(dir, "no-such-folder", "audit.key");
    const r = await cli("start", "--until-idle", "--key-file", key);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `bernstein: --key-file ${key}: no folder ${path.dirname(key)}; a new audit key is made only in an existing folder\n`,
    );
    assert.deepEqual(await readdir(dir), before, "no key folder made");
    assert.deepEqual(await listRuns(ws), [], "no run left by the refusal");

    // In a folder that exists, the first writer's key is made there (docs/recovery.md).
    const made = await cli("start", "--until-idle", "--key-file", path.join(dir, "audit.key"));
    assert.equal(made.code, 0, made.stderr);
    assert.ok((await readdir(dir)).includes("audit.key"));
  } finally {
    await cleanup();
  }
});

test("a run without entries sorts by the time in its id, not as the newest", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-empty-run-");
  try {
    // Left by a process killed between opening its WAL and its first entry, an hour ago.
    const empty = newRunId(new Date(Date.now() - 3_600_000));
    await writeFile(ws.walFile(empty), "");
    assert.equal((await cli("start", "--until-idle")).code, 0);
    const runs = (await listRuns(ws)).map((r) => r.run_id);
    assert.equal(runs.length, 2);
    assert.equal(runs[0], empty, "the empty run is the older one");
    const status = JSON.parse((await cli("status", "--json")).stdout) as { wal: { run_id: string } };
    assert.equal(status.wal.run_id, runs[1]);
    const fingerprint = await cli("wal", "fingerprint", "--json");
    assert.equal(fingerprint.code, 0, fingerprint.stderr);
    assert.equal((JSON.parse(fingerprint.stdout) as { run_id: string }).run_id, runs[1]);
  } finally {
    await cleanup();
  }
});
