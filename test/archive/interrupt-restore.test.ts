/**
 * Ctrl-C while a point-in-time restore extracts its base snapshot (straight into the point's
 * staging folder): the extraction stops, the staging folder goes, and so do the folders the
 * restore made for its target: nothing is left behind, as after an interrupted `dr restore` of a
 * backup.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { scratchDir, spawnCli, waitFor } from "../helpers.js";
import { archiveFixture } from "./support/archive-workspace.js";

/** Enough files that extracting the snapshot takes a while. */
const FILES = 3000;

test("SIGINT during dr archive-restore, while the snapshot is extracted: exit 130, no staging folder and none of the folders made for the target", async () => {
  const scratch = await scratchDir("bernstein-archive-interrupt-");
  try {
    const f = await archiveFixture(path.join(scratch.dir, "ws"));
    const docs = path.join(f.sdd, "docs", "many");
    await mkdir(docs, { recursive: true });
    for (let i = 0; i < FILES; i++)
      await writeFile(path.join(docs, `note-${i}.md`), `note ${i}\n`.repeat(20));
    const store = path.join(f.dir, "store");
    const archived = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(archived.code, 0, archived.stderr);

    const made = path.join(scratch.dir, "new");
    const parent = path.join(made, "a");
    const { child, done } = spawnCli(
      ["--sdd", path.join(parent, ".sdd"), "dr", "archive-restore", "--from", store, "--latest"],
      { env: f.env, cwd: f.dir },
    );
    // The snapshot being extracted into the staging folder.
    await waitFor(
      "the snapshot's extraction under way",
      async () => {
        const staging = (await readdir(parent).catch(() => [] as string[])).find((n) => /\.restore-/.test(n));
        return (
          staging !== undefined && (await readdir(path.join(parent, staging)).catch(() => [])).length > 0
        );
      },
      { exited: done },
    );
    child.kill("SIGINT");
    const r = await done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted by SIGINT; removed /);
    await assert.rejects(stat(made), { code: "ENOENT" }, "the folders the restore made are gone");
  } finally {
    await scratch.cleanup();
  }
});
