/**
 * The global `--sdd` and `--config` are read anywhere on the line, so an option right after them
 * was their value: `dr restore --from x --sdd --json` restored into a folder named `--json`. An
 * option-like value is a usage error (exit 2, one line, the JSON document under --json) that
 * says how to name such a path (`./-x`), and nothing is created.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { workspaceWithBackup } from "../dr/support/workspace.js";

test("--sdd and --config refuse a value that starts with '-'; ./-x names such a path", async (t) => {
  const { dir, env, ws, backup } = await workspaceWithBackup(t, "bernstein-global-path-");
  const before = await readdir(dir);

  for (const [args, flag, value, what] of [
    [["dr", "restore", "--from", backup, "--sdd", "--json"], "--sdd", "--json", "folder"],
    [["dr", "backup", "--sdd", "--json", "--to", "q.tar.gz"], "--sdd", "--json", "folder"],
    [["--sdd=-q", "status"], "--sdd", "-q", "folder"],
    [["--config", "--quiet", "--sdd", ws.root, "status"], "--config", "--quiet", "file"],
  ] as const) {
    const r = await runCli([...args], { env, cwd: dir });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(
      r.stderr,
      `bernstein: ${flag} ${value}: needs a ${what}, and this looks like an option; write a ${what} whose name starts with '-' as ./${value}; see 'bernstein --help'\n`,
    );
    if ((args as readonly string[]).includes("--json")) {
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.ok, false);
      assert.equal(doc.exit_code, 2);
      assert.match(doc.error, new RegExp(`^${flag} ${value}: needs a ${what}`));
    } else assert.equal(r.stdout, "");
  }
  assert.deepEqual(await readdir(dir), before, "no folder named after an option, no backup");

  // A folder whose name starts with '-', named as the message says.
  const dashed = await runCli(["dr", "restore", "--from", backup, "--sdd", "./-x"], { env, cwd: dir });
  assert.equal(dashed.code, 0, dashed.stderr);
  assert.ok((await readdir(path.join(dir, "-x"))).includes("runtime"));
});

test("an empty --sdd or --config is refused; an empty BERNSTEIN_SDD counts as unset", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-empty-path-");
  t.after(cleanup);
  const env = envFor(dir);
  const project = path.join(dir, "project");
  await mkdir(project);
  await writeFile(path.join(project, "main.py"), "x\n");
  for (const [args, flag, what] of [
    [["--sdd", "", "init"], "--sdd", "folder"],
    [["--sdd=", "init"], "--sdd", "folder"],
    [["--config", " ", "init"], "--config", "file"],
    [["start", "--key-file", "", "--until-idle"], "--key-file", "file"],
  ] as const) {
    const r = await runCli([...args], { env, cwd: project });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^bernstein: ${flag} .*needs a ${what}, not an empty one; see `));
    assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  }
  assert.deepEqual(await readdir(project), ["main.py"], "nothing laid out in the project folder");

  const r = await runCli(["init"], { env: { ...env, BERNSTEIN_SDD: "" }, cwd: project });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await readdir(project)).sort(), [".sdd", "main.py"]);
});
