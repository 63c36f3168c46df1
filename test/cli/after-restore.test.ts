/**
 * What a user runs first after `dr restore` finds nothing wrong: the restored workspace has the
 * layout `init` gives (the folders backups leave out, such as logs, and those the Python
 * original does not have), so doctor passes every check without a warning.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { WORKSPACE_DIRS } from "../../src/workspace/layout.js";
import { FIXTURES, envFor, runCli, scratchDir } from "../helpers.js";

interface Check {
  name: string;
  verdict: string;
  detail: string;
}

async function doctorChecks(sdd: string, env: Record<string, string | undefined>): Promise<Check[]> {
  const r = await runCli(["--sdd", sdd, "doctor", "--json"], { env });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return (JSON.parse(r.stdout) as { checks: Check[] }).checks;
}

test("after dr restore of a fresh workspace's backup: doctor passes every check, no warning; status, wal and audit verify exit 0", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-after-restore-");
  t.after(cleanup);
  const env = envFor(dir);
  const source = path.join(dir, "source");
  const cli = (args: string[], cwd = source) => runCli(args, { cwd, env });
  await runCli(["init"], { cwd: dir, env: { ...env, BERNSTEIN_SDD: path.join(source, ".sdd") } });
  for (const args of [
    ["task", "add", "hello", "--command", "true"],
    ["start", "--until-idle"],
    ["checkpoint"],
    ["dr", "backup", "--to", path.join(dir, "b.tar.gz")],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  }
  assert.deepEqual(
    (await doctorChecks(path.join(source, ".sdd"), env)).filter((c) => c.verdict !== "pass"),
    [],
    "the source is clean",
  );

  const restored = path.join(dir, "restored");
  const r = await runCli(
    ["--sdd", path.join(restored, ".sdd"), "dr", "restore", "--from", path.join(dir, "b.tar.gz")],
    {
      env,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    (await doctorChecks(path.join(restored, ".sdd"), env)).filter((c) => c.verdict !== "pass"),
    [],
  );
  for (const args of [["status"], ["wal", "verify"], ["audit", "verify"]]) {
    const after = await cli(args, restored);
    assert.equal(after.code, 0, `${args.join(" ")}: ${after.stdout}${after.stderr}`);
  }
});

test("after dr restore of the Python original's backup: every folder of the layout is there", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-after-restore-py-");
  t.after(cleanup);
  const sdd = path.join(dir, "restored", ".sdd");
  const from = path.join(FIXTURES, "python-reference/backup-plain.tar.gz");
  const r = await runCli(["--sdd", sdd, "dr", "restore", "--from", from], { env: envFor(dir) });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    WORKSPACE_DIRS.filter((rel) => !existsSync(path.join(sdd, rel))),
    [],
  );
  const layout = (await doctorChecks(sdd, envFor(dir))).find((c) => c.name === "layout")!;
  assert.equal(layout.verdict, "pass", layout.detail);
});
