/**
 * `bernstein --version` is what a script runs to check the install: it must not load every
 * command's modules to print one line.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, moduleLoadLogger, runCli, scratchDir } from "../helpers.js";

test("--version prints the version (text and --json) without loading any command", async (t) => {
  const { dir, cleanup } = await scratchDir();
  t.after(cleanup);
  const log = path.join(dir, "version.log");
  const env = { ...envFor(dir), NODE_OPTIONS: await moduleLoadLogger(dir, log) };
  const text = await runCli(["--version"], { cwd: dir, env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^\d+\.\d+\.\d+\n$/);
  const loaded = (await readFile(log, "utf8")).split("\n").filter(Boolean);
  assert.ok(
    loaded.some((u) => u.endsWith("/src/cli/commands/index.js")),
    "the hook saw the CLI's modules",
  );
  const commands = loaded.filter((u) => u.includes("/src/cli/commands/") && !u.endsWith("/index.js"));
  assert.deepEqual(commands, []);

  const json = await runCli(["--json", "--version"], { cwd: dir, env: envFor(dir) });
  assert.equal(json.code, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { version: string }).version, text.stdout.trim());
  // Help beside it: commander prints the version, as it did with the whole tree loaded.
  const both = await runCli(["--help", "--version"], { cwd: dir, env: envFor(dir) });
  assert.equal(both.code, 0, both.stderr);
  assert.equal(both.stdout, text.stdout);
});
