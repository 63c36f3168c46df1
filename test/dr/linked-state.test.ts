/**
 * A symbolic link where the workspace's state lives (a backlog folder, `runtime/`) is never
 * archived, so the state behind it would be missing from a backup that verify and drill pass:
 * backup, its dry run, drill and schedule refuse it (exit 5, one line naming it, nothing
 * written). A link elsewhere is left out and named with its reason by the dry run.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("a symlinked backlog folder or runtime/ refuses backup, dry run, drill and schedule (exit 5, one line, nothing written); a link in docs/ is named by the dry run", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir);
    await writeFile(ws.p("backlog", "done", "T-9.md"), "done task\n");
    const out = path.join(dir, "out");
    await mkdir(out);
    const refusedBy = async (rel: string): Promise<void> => {
      const word = path.relative(dir, ws.p(rel));
      const line = `bernstein: backup refused: ${word}: symbolic link where the workspace's state lives, which a backup never archives, so the state behind it would be missing from the backup; put the folder or file itself there and back up again\n`;
      for (const args of [
        ["dr", "backup", "--sdd", ws.root, "--to", path.join(out, "b.tar.gz"), "--dry-run"],
        ["dr", "backup", "--sdd", ws.root, "--to", path.join(out, "b.tar.gz")],
      ]) {
        const r = await runCli(args, { env, cwd: dir });
        assert.equal(r.code, 5, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
        assert.equal(r.stderr, line, args.join(" "));
      }
      // The drill reports its failed backup step as a failed drill.
      const d = await runCli(["dr", "drill", "--sdd", ws.root], { env, cwd: dir });
      assert.equal(d.code, 1, d.stdout + d.stderr);
      assert.ok(
        d.stdout.includes(`[FAIL] backup`) && d.stdout.includes(line.slice("bernstein: ".length, -1)),
        d.stdout,
      );
      const s = await runCli(
        ["dr", "schedule", "--sdd", ws.root, "--every", "1h", "--once", "--to-dir", out],
        {
          env,
          cwd: dir,
        },
      );
      assert.notEqual(s.code, 0, s.stdout + s.stderr);
      assert.match(s.stdout + s.stderr, /backup refused: .*symbolic link where the workspace's state lives/);
      assert.deepEqual(await readdir(out), [], "nothing written");
    };

    const disk2 = path.join(dir, "disk2");
    await mkdir(disk2);
    await rename(ws.p("backlog", "done"), path.join(disk2, "done"));
    await symlink(path.join(disk2, "done"), ws.p("backlog", "done"));
    await refusedBy("backlog/done");
    await rm(ws.p("backlog", "done"));
    await rename(path.join(disk2, "done"), ws.p("backlog", "done"));

    await rename(ws.p("runtime"), path.join(disk2, "runtime"));
    await symlink(path.join(disk2, "runtime"), ws.p("runtime"));
    await refusedBy("runtime");
    await rm(ws.p("runtime"));
    await rename(path.join(disk2, "runtime"), ws.p("runtime"));

    // Not state: left out, and the dry run names it with its true reason.
    await symlink(path.join(disk2), ws.p("docs", "elsewhere"));
    const dry = await runCli(
      ["dr", "backup", "--sdd", ws.root, "--to", path.join(out, "b.tar.gz"), "--dry-run"],
      {
        env,
      },
    );
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^ {2}docs\/elsewhere {2}\(symbolic link, never archived\)$/m);
    const b = await runCli(["dr", "backup", "--sdd", ws.root, "--to", path.join(out, "b.tar.gz")], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.ok(existsSync(path.join(out, "b.tar.gz")));
  } finally {
    await cleanup();
  }
});
