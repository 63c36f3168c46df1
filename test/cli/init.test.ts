import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { WORKSPACE_DIRS } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

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

test("init --sdd PROJECT, whose .sdd/ is a workspace, is refused with the hint and creates nothing", async (t) => {
  const { dir, cleanup } = await scratchDir();
  t.after(cleanup);
  const env = envFor(dir);
  const project = path.join(dir, "rB");
  assert.equal((await runCli(["--sdd", path.join(project, ".sdd"), "init"], { env })).code, 0);
  const added = await runCli(["--sdd", path.join(project, ".sdd"), "task", "add", "a", "--command", "true"], {
    env,
  });
  assert.equal(added.code, 0, added.stderr);

  const r = await runCli(["--sdd", "rB", "init"], { cwd: dir, env });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(
    r.stderr,
    "bernstein: rB is not a bernstein workspace, but its .sdd/ is: pass --sdd rB/.sdd (or set BERNSTEIN_SDD to it)\n",
  );
  assert.deepEqual(await readdir(project), [".sdd"], "no second workspace beside it");
  const status = await runCli(["--sdd", path.join(project, ".sdd"), "status", "--json"], { env });
  assert.equal(JSON.parse(status.stdout).tasks.open, 1, status.stdout);
});

test("an unknown command is a usage error (exit 2)", async () => {
  const r = await runCli(["no-such-command"]);
  assert.equal(r.code, 2);
});
