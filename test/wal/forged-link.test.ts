/**
 * A link forged with a right entry_hash: every line hashes, so only the link check can refuse it,
 * and the fast paths (which take such lines on their bytes) must leave that to the exact check.
 * Each command that reads a chain refuses it with its own message and exit code.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { GENESIS_HASH, buildEntryWithLine, sha256Hex } from "../../src/wal/entry.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

async function workspaceWithForgedLink(dir: string) {
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  let prev = GENESIS_HASH;
  let text = "";
  for (let seq = 0; seq < 30; seq++) {
    const linkTo = seq === 20 ? sha256Hex("another chain") : prev;
    const record = { decision_type: "note", inputs: { seq }, committed: true };
    const { entry, line } = buildEntryWithLine(record, seq, linkTo, 1795744701.5 + seq);
    prev = entry.entry_hash;
    text += line;
  }
  await writeFile(ws.walFile("run-a"), text);
  return ws;
}

test("a forged link is refused by load state, wal show and doctor with their messages and exit codes", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const ws = await workspaceWithForgedLink(dir);
    const env = { XDG_STATE_HOME: path.join(dir, "x") };
    const checkpoint = await runCli(["--sdd", ws.root, "checkpoint"], { env });
    assert.equal(checkpoint.code, 9, checkpoint.stderr);
    assert.equal(
      checkpoint.stderr.trim(),
      `bernstein: load state: wal ${ws.walFile("run-a")}: line 21 (seq 20): prev_hash does not link to the previous entry`,
    );
    const show = await runCli(["--sdd", ws.root, "wal", "show"], { env });
    assert.equal(show.code, 5, show.stderr);
    assert.equal(
      show.stderr.trim(),
      "bernstein: wal run-a: prev_hash_mismatch at seq 20, line 21: prev_hash does not match the previous entry; " +
        "run `bernstein wal verify --run run-a`",
    );
    const doctor = await runCli(["--sdd", ws.root, "doctor"], { env });
    assert.equal(doctor.code, 1, doctor.stderr);
    assert.match(
      doctor.stdout,
      /FAIL wal: broken chain: run-a at seq 20, line 21: prev_hash \w{64} does not match/,
    );
  } finally {
    await cleanup();
  }
});
