/**
 * `status` is what an operator runs most: it must not pay for age's curves and post-quantum code,
 * which the orchestrator's modules reach (the archiver seals segments) but a status never uses.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, moduleLoadLogger, runCli, scratchDir } from "../helpers.js";

test("status loads neither the age library nor its curves", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    assert.equal((await runCli(["init", "--json"], { cwd: dir, env: envFor(dir) })).code, 0);
    const log = path.join(dir, "status.log");
    const env = { ...envFor(dir), NODE_OPTIONS: await moduleLoadLogger(dir, log) };
    const r = await runCli(["status", "--json"], { cwd: dir, env });
    assert.equal(r.code, 0, r.stderr);
    const loaded = (await readFile(log, "utf8")).split("\n").filter(Boolean);
    assert.ok(
      loaded.some((u) => u.endsWith("/src/orchestrator/status.js")),
      "the hook saw the CLI's modules",
    );
    const extra = loaded.filter(
      (u) =>
        u.includes("/node_modules/age-encryption/") ||
        u.includes("/node_modules/@noble/") ||
        u.endsWith("/src/dr/age/library.js"),
    );
    assert.deepEqual(extra, []);
  } finally {
    await cleanup();
  }
});
