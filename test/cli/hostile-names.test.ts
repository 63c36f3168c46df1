/**
 * Names and text from an archive, a store or the network reach a terminal escaped: a newline in
 * a name cannot fake a second line, an escape sequence is shown, not obeyed.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { printable, shownOnHost } from "../../src/workspace/shown-path.js";
import { archiveOf } from "../dr/support/craft.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

const HOSTILE = "memory/a\nruntime/wal/run-FAKE.wal.jsonl\u001b[31m";

test("dr restore --dry-run lists an entry with a newline and ESC in its name as one escaped line", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const archive = path.join(dir, "evil.tar.gz");
    await writeFile(
      archive,
      archiveOf([
        { path: "memory/ok.md", data: Buffer.from("ok\n") },
        { path: HOSTILE, data: Buffer.from("x\n") },
      ]),
    );
    const r = await runCli(["dr", "restore", "--dry-run", "--from", archive], { env: envFor(dir) });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes("\u001b"), "no ESC reaches the terminal");
    const listed = r.stdout.split("Files in backup:\n")[1]!.trimEnd().split("\n");
    assert.deepEqual(listed, [
      "manifest.json",
      "memory/ok.md",
      "$'memory/a\\x0aruntime/wal/run-FAKE.wal.jsonl\\x1b[31m'",
    ]);
    // --json stays the names as they are (JSON escapes them).
    const j = await runCli(["dr", "restore", "--dry-run", "--from", archive, "--json"], { env: envFor(dir) });
    assert.equal(j.code, 0, j.stderr);
    assert.ok((JSON.parse(j.stdout) as { files: string[] }).files.includes(HOSTILE));
  } finally {
    await cleanup();
  }
});

test("a generation's host and folder, and free text from a record, are shown escaped", () => {
  assert.equal(
    shownOnHost("h\u001b[2J", "/w/.sdd\nFAKE: all good"),
    "$'/w/.sdd\\x0aFAKE: all good' on $'h\\x1b[2J'",
  );
  assert.equal(shownOnHost("build-1", "/srv/w/.sdd"), "/srv/w/.sdd on build-1");
  assert.equal(
    shownOnHost(os.hostname(), path.join(process.cwd(), "w", ".sdd")),
    `w/.sdd on ${os.hostname()}`,
  );
  assert.equal(printable("started\r\nFAKE\u009b2J"), "started\\x0d\\x0aFAKE\\x9b2J");
});
