import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  listCheckpointFiles,
  validateCheckpointFile,
  writeCheckpoint,
} from "../../src/checkpoint/checkpoint.js";
import { loadState } from "../../src/checkpoint/load-state.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { prng, scratchDir } from "../helpers.js";
import { randomDecisions } from "./support/decisions.js";
import { appendRecords, steppingClock } from "./support/wal-runs.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "support", "checkpoint-writer.js");

/** Starts the writer, waits for "ready", lets it run `delayMs`, then SIGKILLs it. */
function killDuringWrites(sdd: string, delayMs: number): Promise<NodeJS.Signals | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, sdd], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.stdout.setEncoding("utf8").once("data", () => setTimeout(() => child.kill("SIGKILL"), delayMs));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      signal ? resolve(signal) : reject(new Error(`exited ${code}: ${err}`)),
    );
  });
}

/** Rounds at least, and then more until this many kills landed inside a write (the temp file exists only briefly). */
const MIN_ROUNDS = 50;
const MID_WRITE_KILLS = 3;
const MAX_ROUNDS = 400;

test("SIGKILL at random moments of checkpoint writing (at least 50, and 3 inside a write) always leaves the previous checkpoint valid and loadable", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    // A state big enough that one write takes a few milliseconds.
    await appendRecords(ws, "run-a", randomDecisions(7, 3000), { clock: steppingClock(1_790_000_000) });
    const expected = (await loadState(ws)).state;
    await writeCheckpoint(ws, expected);
    const r = prng(2026);
    let killedMidWrite = 0;
    for (let i = 0; i < MIN_ROUNDS || (killedMidWrite < MID_WRITE_KILLS && i < MAX_ROUNDS); i++) {
      const before = new Set((await readdir(ws.checkpointsDir)).filter((n) => n.startsWith(".")));
      assert.equal(await killDuringWrites(ws.root, Math.floor(r() * 40)), "SIGKILL");
      const after = (await readdir(ws.checkpointsDir)).filter((n) => n.startsWith(".") && !before.has(n));
      if (after.length) killedMidWrite++; // a temp file left: the kill landed inside a write
      // Every checkpoint file that is visible is complete and valid (atomic rename).
      const files = await listCheckpointFiles(ws);
      assert.ok(files.length >= 1);
      for (const f of files) {
        const check = await validateCheckpointFile(ws, f.file);
        assert.ok(check.ok, `round ${i}: ${f.id}: ${check.ok ? "" : check.problem}`);
      }
      const loaded = await loadState(ws);
      assert.deepEqual(loaded.warnings, []);
      assert.ok(loaded.checkpoint);
      assert.equal(loaded.applied, 0);
      assert.deepEqual(loaded.state, expected);
    }
    assert.ok(killedMidWrite > 0, `at least one kill of ${MAX_ROUNDS} landed inside a write`);
    // The next writer removes the dead writers' temp files (never a visible checkpoint).
    const next = await writeCheckpoint(ws, expected);
    void next;
    assert.deepEqual(
      (await readdir(ws.checkpointsDir)).filter((n) => n.startsWith(".")),
      [],
    );
  } finally {
    await cleanup();
  }
});
