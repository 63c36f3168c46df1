import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const MAIN = pathToFileURL(
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js"),
).href;

/** Runs `exitWith(<work>)` in a fresh Node process. */
function exitOf(work: string): { status: number | null; stderr: string } {
  const r = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", `import { exitWith } from ${JSON.stringify(MAIN)}; exitWith(${work});`],
    { encoding: "utf8" },
  );
  return { status: r.status, stderr: r.stderr };
}

test("a command's exit code is the process's; one that never settles is exit 70, not 0", () => {
  assert.deepEqual(exitOf("Promise.resolve(3)"), { status: 3, stderr: "" });
  assert.deepEqual(exitOf("new Promise((r) => setTimeout(() => r(0), 50))"), { status: 0, stderr: "" });
  // Nothing left to wait on and the promise still pending: Node alone would exit 0.
  const hung = exitOf("new Promise(() => {})");
  assert.equal(hung.status, 70);
  assert.match(hung.stderr, /^bernstein: internal error: the command stopped before it finished[^\n]*\n$/);
});
