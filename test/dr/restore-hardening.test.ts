/**
 * What a restore refuses or tames from its input: a FIFO given as the archive (opening one for
 * reading blocks in open(2) until a writer comes), and the modes an archive carries (0666 files
 * and 0777 folders are restored masked by the umask and never group- or other-writable).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runCli, scratchDir, envFor } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("dr restore --from FIFO and dr verify --from FIFO exit 2 'not a regular file' instead of hanging", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const fifo = path.join(dir, "archive.fifo");
    execFileSync("mkfifo", [fifo]);
    const target = path.join(dir, "r", ".sdd");
    for (const args of [
      ["dr", "restore", "--from", fifo, "--sdd", target],
      ["dr", "restore", "--from", fifo, "--dry-run"],
      ["dr", "verify", "--from", fifo],
      ["dr", "verify", "--from", fifo, "--json"],
    ]) {
      // Nobody ever writes to the FIFO: an open that blocks would run into the timeout (killed).
      const r = await runCli(args, { env, timeoutMs: 60_000 });
      assert.equal(r.signal, null, `${args.join(" ")} hung`);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, `bernstein: --from ${fifo}: not a regular file\n`);
    }
    assert.equal(existsSync(path.join(dir, "r")), false, "nothing created for the target");
  } finally {
    await cleanup();
  }
});

test("restored modes are masked by the umask and never group/other-writable: a 0666 file and a 0777 folder in the archive", async () => {
  const { dir, cleanup } = await scratchDir();
  // The CLI children inherit the umask; set back before anything else runs.
  const previousUmask = process.umask(0o027);
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    await mkdir(ws.p("docs", "open"));
    await chmod(ws.p("docs", "open"), 0o777);
    await writeFile(ws.p("docs", "open", "anyone.md"), "writable by anyone\n");
    await chmod(ws.p("docs", "open", "anyone.md"), 0o666);
    await chmod(ws.p("docs", "run.sh"), 0o777);
    const archive = path.join(dir, "b.tar.gz");
    const b = await runCli(["dr", "backup", "--sdd", ws.root, "--to", archive], { env });
    assert.equal(b.code, 0, b.stderr);
    const modeOf = (p: string): string => (statSync(p).mode & 0o7777).toString(8);

    // umask 027: group loses write, others lose everything.
    const t1 = path.join(dir, "r1", ".sdd");
    const r1 = await runCli(["dr", "restore", "--from", archive, "--sdd", t1], { env });
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(modeOf(path.join(t1, "docs", "open")), "750");
    assert.equal(modeOf(path.join(t1, "docs", "open", "anyone.md")), "640");
    assert.equal(modeOf(path.join(t1, "docs", "run.sh")), "750");
    assert.equal(modeOf(path.join(t1, "config", "secret.yaml")), "600");

    // umask 0: the archive's modes, but never writable by group or others.
    process.umask(0);
    const t2 = path.join(dir, "r2", ".sdd");
    const r2 = await runCli(["dr", "restore", "--from", archive, "--sdd", t2], { env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(modeOf(path.join(t2, "docs", "open")), "755");
    assert.equal(modeOf(path.join(t2, "docs", "open", "anyone.md")), "644");
    assert.equal(modeOf(path.join(t2, "docs", "run.sh")), "755");
    assert.equal(modeOf(path.join(t2, "config", "secret.yaml")), "600");
    for (const f of execFileSync("find", [t2], { encoding: "utf8" }).trim().split("\n")) {
      assert.equal(statSync(f).mode & 0o022, 0, `${f} is writable by group or others`);
    }

    // The drill's compare expects the masked modes. (Hand-made claimed/failed task files have no
    // decisions behind them: its doctor step would rightly object.)
    await rm(ws.p("backlog", "claimed", "T-2.md"));
    await rm(ws.p("backlog", "failed", "T-3.md"));
    const drill = await runCli(["dr", "drill", "--sdd", ws.root, "--json"], { env });
    assert.equal(drill.code, 0, drill.stdout + drill.stderr);
    assert.equal(JSON.parse(drill.stdout).ok, true);
  } finally {
    process.umask(previousUmask);
    await cleanup();
  }
});
