import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { walkWorkspace } from "../../src/dr/walk.js";
import { tempPathFor } from "../../src/workspace/durable.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

test("temp files of atomic writes are never archived; other dot files are", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const gone = spawnSync("true").pid!;
    // A lock taker killed before its rename, and a live writer of a backlog file.
    const lockTemp = path.join(ws.p("runtime"), `.bernstein.pid.tmp-${gone}-0badc0de`);
    const liveTemp = tempPathFor(ws.p("backlog", "open", "T-1.md"));
    await writeFile(lockTemp, "{}");
    await writeFile(liveTemp, "half a task");
    await writeFile(ws.p("docs", ".notes.md"), "kept");
    await writeFile(ws.p("docs", "build.tmp-1-a"), "kept: not a temp name");
    const walk = walkWorkspace(ws.root);
    const files = walk.files.map((f) => f.rel);
    assert.ok(files.includes("docs/.notes.md"));
    assert.ok(files.includes("docs/build.tmp-1-a"));
    const rel = (p: string): string => path.relative(ws.root, p);
    for (const temp of [lockTemp, liveTemp]) {
      assert.ok(!files.includes(rel(temp)), rel(temp));
      assert.deepEqual(
        walk.excluded.find((e) => e.path === rel(temp)),
        { path: rel(temp), reason: "pattern */.*.tmp-[0-9]*-*" },
      );
    }
  } finally {
    await cleanup();
  }
});
