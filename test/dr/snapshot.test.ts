/**
 * Consistent snapshots of a live workspace: a paused orchestrator yields archives in which every
 * decision is whole (intent, on-disk change and commit together); without an answer the WALs are
 * still cut at a complete, hash-valid entry.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream, readFileSync, readdirSync } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { backupToFile } from "../../src/dr/backup.js";
import { StagingWriter } from "../../src/dr/staging-writer.js";
import { readArchive } from "../../src/dr/unpack.js";
import { verifyWal } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { REPO_ROOT, scratchDir } from "../helpers.js";

const SUPPORT = path.join(REPO_ROOT, "dist", "test", "dr", "support", "live-orchestrator.js");

function startLive(root: string, run: string, extra: string[] = []): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SUPPORT, root, run, ...extra], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      if (d.includes("ready")) resolve(child);
    });
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`live orchestrator exited early (${code})`)));
  });
}

async function extract(archive: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  const w = new StagingWriter(into, { fsync: false });
  await readArchive(createReadStream(archive), w);
  await w.finish();
}

/** Intents and commits in a WAL file. */
function decisions(file: string): { intents: number; commits: number; lastSeq: number } {
  let intents = 0;
  let commits = 0;
  let lastSeq = -1;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    const e = JSON.parse(line) as { committed: boolean; seq: number };
    if (e.committed) commits++;
    else intents++;
    lastSeq = e.seq;
  }
  return { intents, commits, lastSeq };
}

test("backups taken while an orchestrator runs are paused at a decision boundary: every decision whole", async () => {
  const { dir, cleanup } = await scratchDir();
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  const child = await startLive(ws.root, "run-live");
  try {
    for (let i = 0; i < 5; i++) {
      const dest = path.join(dir, `b${i}.tar.gz`);
      const r = await backupToFile(ws, dest, {});
      assert.equal(r.manifest.snapshot.method, "paused", JSON.stringify(r.manifest.snapshot));
      const into = path.join(dir, `x${i}`);
      await extract(dest, into);
      const wal = path.join(into, "runtime", "wal", "run-live.wal.jsonl");
      assert.equal((await verifyWal(wal, "run-live")).ok, true);
      const d = decisions(wal);
      assert.ok(d.commits > 0);
      assert.equal(d.intents, d.commits, `backup ${i}: a decision was cut in half`);
      assert.equal(
        readdirSync(path.join(into, "backlog", "claimed")).length,
        d.commits,
        `backup ${i}: backlog and WAL disagree`,
      );
      assert.equal(r.manifest.state.wal["run-live"]?.seq, d.lastSeq);
    }
  } finally {
    child.kill("SIGKILL");
    await cleanup();
  }
});

test("an orchestrator that does not answer: the backup goes on unpaused, each WAL cut at its last valid entry", async () => {
  const { dir, cleanup } = await scratchDir();
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  const child = await startLive(ws.root, "run-busy", ["--no-responder"]);
  try {
    const dest = path.join(dir, "b.tar.gz");
    const r = await backupToFile(ws, dest, { snapshotAckTimeoutMs: 200 });
    assert.equal(r.manifest.snapshot.method, "unpaused");
    assert.ok(r.warnings.some((w) => /did not acknowledge/.test(w)));
    await extract(dest, path.join(dir, "x"));
    const v = await verifyWal(path.join(dir, "x", "runtime", "wal", "run-busy.wal.jsonl"), "run-busy");
    assert.equal(v.ok, true, JSON.stringify(v.errors));
    assert.equal(r.manifest.state.wal["run-busy"]?.seq, v.last_seq);
  } finally {
    child.kill("SIGKILL");
  }
  try {
    // A torn tail (a crash mid-append) is left out of the archive; the manifest says where it ends.
    const walFile = ws.walFile("run-busy");
    const full = readFileSync(walFile);
    await appendFile(walFile, '{"seq":999999,"prev_hash":"00');
    const dest = path.join(dir, "torn.tar.gz");
    const r = await backupToFile(ws, dest, {});
    const row = r.manifest.files.find((f) => f.path === "runtime/wal/run-busy.wal.jsonl")!;
    assert.ok(row.size <= full.length);
    await extract(dest, path.join(dir, "y"));
    const v = await verifyWal(path.join(dir, "y", "runtime", "wal", "run-busy.wal.jsonl"), "run-busy");
    assert.equal(v.ok, true);
    assert.equal(r.manifest.state.wal["run-busy"]?.seq, v.last_seq);
  } finally {
    await cleanup();
  }
});
