/**
 * What `dr backup` and `dr restore` load: only their own side. Every module a run loads is CPU
 * that `tar` does not spend (the configuration parser, age's curves, the other subcommands cost
 * a backup about a third of a CPU second), so a plain run without a configuration file must not
 * load them. Read through a module hook that lists every file the CLI process loads.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, moduleLoadLogger, runCli, scratchDir } from "../helpers.js";

/** Modules a plain backup or restore without a configuration file has no use for. */
const NOT_NEEDED = [
  "/node_modules/zod/",
  "/node_modules/yaml/",
  "/node_modules/@noble/",
  "/node_modules/age-encryption/",
  "/node_modules/@aws-sdk/",
  "/src/vendor/s3.js",
  "/src/vendor/zod.js",
  "/src/vendor/yaml.js",
  "/src/vendor/age.js",
  // (age/header.js, the format's magic bytes, is only node:crypto: a restore sniffs with it.)
  "/src/dr/age/keys.js",
  "/src/dr/age/archive.js",
  "/src/dr/age/decrypt.js",
  "/src/dr/age/encrypt.js",
  "/src/dr/verify.js",
  "/src/dr/drill.js",
  "/src/dr/rekey.js",
  "/src/cli/commands/dr/verify.js",
  "/src/cli/commands/dr/drill.js",
  "/src/cli/commands/dr/rekey.js",
];

async function loadedBy(dir: string, args: string[], name: string): Promise<string[]> {
  const log = path.join(dir, `${name}.log`);
  const env = { ...envFor(dir), NODE_OPTIONS: await moduleLoadLogger(dir, log) };
  const r = await runCli(args, { cwd: dir, env });
  assert.equal(r.code, 0, r.stderr);
  const loaded = (await readFile(log, "utf8")).split("\n").filter(Boolean);
  assert.ok(
    loaded.some((u) => u.endsWith("/src/dr/pack.js") || u.endsWith("/src/dr/unpack.js")),
    name,
  );
  return loaded;
}

test("a plain dr backup and dr restore load neither the configuration parser, age, S3 nor the other subcommands", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const init = await runCli(["init", "--json"], { cwd: dir, env: envFor(dir) });
    assert.equal(init.code, 0, init.stderr);
    const archive = path.join(dir, "b.tar.gz");
    const backup = await loadedBy(dir, ["dr", "backup", "--to", archive, "--json"], "backup");
    const restoreArgs = ["--sdd", path.join(dir, "r", ".sdd"), "dr", "restore", "--from", archive];
    const restore = await loadedBy(dir, [...restoreArgs, "--json"], "restore");
    for (const [name, loaded] of [
      ["backup", backup],
      ["restore", restore],
    ] as const) {
      const extra = loaded.filter((u) => NOT_NEEDED.some((m) => u.includes(m)));
      assert.deepEqual(extra, [], `dr ${name} loaded modules it does not use`);
    }
  } finally {
    await cleanup();
  }
});
