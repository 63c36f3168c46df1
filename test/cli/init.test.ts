import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { WORKSPACE_DIRS } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

test("init creates every workspace folder and is idempotent", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const first = await runCli(["init", "--json"], { cwd: dir, env: { BERNSTEIN_SDD: undefined } });
    assert.equal(first.code, 0, first.stderr);
    for (const rel of WORKSPACE_DIRS) {
      assert.ok((await stat(path.join(dir, ".sdd", rel))).isDirectory(), rel);
    }
    const second = await runCli(["init", "--json"], { cwd: dir, env: { BERNSTEIN_SDD: undefined } });
    assert.equal(second.code, 0);
    assert.deepEqual(JSON.parse(second.stdout).created, []);
  } finally {
    await cleanup();
  }
});

test("an unknown command is a usage error (exit 2)", async () => {
  const r = await runCli(["no-such-command"]);
  assert.equal(r.code, 2);
});
