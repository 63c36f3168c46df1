/**
 * `--json`: every command prints one JSON document on stdout, and every document says `ok`, so a
 * script can check any command the same way.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli, scratchDir, envFor } from "../helpers.js";

test("every command's --json document is one JSON value with a boolean ok", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-json-");
  t.after(cleanup);
  const env = envFor(dir);
  const json = async (args: string[]): Promise<Record<string, unknown>> => {
    const r = await runCli([...args, "--json"], { cwd: dir, env });
    const what = `bernstein ${args.join(" ")} --json`;
    assert.equal(r.code, 0, `${what}: ${r.stdout}${r.stderr}`);
    let doc: unknown;
    assert.doesNotThrow(() => (doc = JSON.parse(r.stdout)), `${what} prints one JSON document`);
    assert.equal(typeof (doc as { ok?: unknown }).ok, "boolean", `${what} has ok: ${r.stdout.slice(0, 200)}`);
    return doc as Record<string, unknown>;
  };
  await json(["init"]);
  await json(["task", "add", "first", "--command", "true"]);
  await json(["start", "--until-idle"]);
  await json(["task", "add", "second", "--command", "true"]);
  for (const args of [
    ["status"],
    ["task", "list"],
    ["task", "list", "--state", "done"],
    ["stop"],
    ["doctor"],
    ["wal", "verify"],
    ["wal", "show"],
    ["wal", "fingerprint"],
    ["audit", "verify"],
    ["checkpoint"],
    ["checkpoint", "list"],
    ["dr", "backup", "--to", "b.tar.gz"],
    ["dr", "backup", "--to", "unused.tar.gz", "--dry-run"],
    ["dr", "restore", "--from", "b.tar.gz", "--dry-run"],
    ["dr", "verify", "--from", "b.tar.gz"],
    ["dr", "list", "--at", "."],
    ["dr", "status"],
    ["dr", "runbook"],
    ["dr", "drill"],
  ]) {
    await json(args);
  }
  assert.equal((await json(["status"])).ok, true);
  assert.equal((await json(["task", "list"])).ok, true);
});
