/**
 * `npm run demo` as a user reads it afterwards: every path it names still exists, or lies in the
 * folder its last line says it removed (the demo folder is temporary unless --keep).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../helpers.js";

const DEMO = path.join(REPO_ROOT, "dist", "src", "cli", "demo.js");

function runDemo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, "--tasks", "2", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const demoPaths = (line: string): string[] => line.match(/\/\S*bernstein-demo-[^\s)]*/g) ?? [];

test("the demo names no file it removed without saying so, nor the audit key it removes; --keep keeps them", async () => {
  const r = await runDemo([]);
  assert.equal(r.code, 0, r.stderr);
  // What the last line says was removed covers every path under it; anything else must exist.
  const removed = /^Removed (\S+)/m.exec(r.stdout)?.[1];
  assert.ok(removed && !existsSync(removed), r.stdout);
  const named = r.stdout.split("\n").flatMap(demoPaths);
  assert.ok(named.length > 0, r.stdout);
  for (const p of named) {
    assert.ok(existsSync(p) || p === removed || p.startsWith(`${removed}/`), `names ${p}, gone unsaid`);
  }
  assert.doesNotMatch(r.stdout, /audit key for this demo is \//);

  const json = await runDemo(["--json"]);
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout.slice(json.stdout.indexOf("{")));
  assert.equal(doc.demo_dir_kept, false);
  assert.equal(doc.audit_key, null);
  assert.ok(!existsSync(doc.demo_dir));

  const kept = await runDemo(["--keep"]);
  try {
    assert.equal(kept.code, 0, kept.stderr);
    const key = /audit key for this demo is (\S+)/.exec(kept.stdout)?.[1];
    assert.ok(key && existsSync(key), kept.stdout);
  } finally {
    const dir = /Kept: (\S+)/.exec(kept.stdout)?.[1];
    if (dir) await rm(dir, { recursive: true, force: true });
  }
});
