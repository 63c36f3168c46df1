/**
 * A restore replaces its target (moved aside, or deleted with --no-keep), so an existing target
 * must be an empty folder or a bernstein workspace. A project folder, the working folder that is
 * one, or a file is refused with exit 6 before anything is touched, whichever restore asks: an
 * archive's, a WAL archive's point.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cp, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { PYTHON_REFERENCE, runCli } from "../helpers.js";
import { appendDecisions, archiveFixture } from "../archive/support/archive-workspace.js";
import { workspaceWithBackup } from "./support/workspace.js";

/** Every entry under `root` (hidden ones too) with a file's content: what a refusal must leave. */
const tree = async (root: string): Promise<string[]> =>
  (await readdir(root, { recursive: true, withFileTypes: true }))
    .map((e) => {
      const rel = path.relative(root, path.join(e.parentPath, e.name));
      return e.isFile() ? `${rel}: ${readFileSync(path.join(root, rel), "utf8")}` : `${rel}/`;
    })
    .sort();

const REFUSED =
  /^bernstein: cannot restore into (\S+): it is (neither empty nor a bernstein workspace \(a \.sdd folder, or one holding runtime\/ and backlog\/\)|a file), and a restore replaces its target; name a new or empty folder, or a workspace's \.sdd\n$/;

test("dr restore onto a project folder, the working folder or a file: exit 6, one line, nothing touched", async (t) => {
  const { dir, env, backup } = await workspaceWithBackup(t, "bernstein-restore-guard-");

  const project = path.join(dir, "proj2");
  await mkdir(path.join(project, "src"), { recursive: true });
  await writeFile(path.join(project, "main.py"), "code\n");
  await writeFile(path.join(project, "src", "a.py"), "x\n");
  // A project with one of the workspace's folders is still not one.
  await mkdir(path.join(project, "runtime"));
  const file = path.join(dir, "afile");
  await writeFile(file, "a\n");
  const before = await tree(dir);

  for (const [args, cwd, named] of [
    [["--sdd", "proj2", "--no-keep"], dir, "proj2"],
    [["--sdd", "proj2"], dir, "proj2"],
    [["--sdd", "."], project, project],
    [["--sdd", "afile", "--no-keep"], dir, "afile"],
  ] as const) {
    const r = await runCli(["dr", "restore", "--from", backup, ...args], { env, cwd });
    assert.equal(r.code, 6, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, "", "no 'Restoring ...' before the refusal");
    assert.equal(REFUSED.exec(r.stderr)?.[1], named, r.stderr);
    const json = await runCli(["--json", "dr", "restore", "--from", backup, ...args], { env, cwd });
    assert.equal(json.code, 6);
    const doc = JSON.parse(json.stdout);
    assert.equal(doc.ok, false);
    assert.equal(doc.exit_code, 6);
    assert.match(doc.error, /^cannot restore into /);
  }
  assert.deepEqual(await tree(dir), before, "no file, folder, lock or staging folder changed");

  // A WAL archive's point goes through the same guard.
  const f = await archiveFixture(path.join(dir, "arch"));
  await appendDecisions(f.ws, "run-guard", 3);
  const store = path.join(dir, "arch", "store");
  assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
  const point = await f.cli(["dr", "restore", "--from", store, "--latest", "--no-keep"], project);
  assert.equal(point.code, 6, point.stderr);
  assert.equal(REFUSED.exec(point.stderr)?.[1], project, point.stderr);
  assert.deepEqual(
    (await tree(dir)).filter((e) => !e.startsWith("arch")),
    before,
    "the point restore left everything as it was",
  );
});

test("dr restore replaces an empty folder, a workspace, a Python-made workspace and the workspace it runs in", async (t) => {
  const { dir, env, ws, backup } = await workspaceWithBackup(t, "bernstein-restore-guard-ok-");
  const restore = (target: string, cwd = dir, ...more: string[]) =>
    runCli(["dr", "restore", "--from", backup, "--sdd", target, ...more], { env, cwd });

  await mkdir(path.join(dir, "empty"));
  assert.equal((await restore("empty")).code, 0);
  // What a disaster left of a workspace: named .sdd, with only part of its layout.
  const damaged = path.join(dir, "damaged", ".sdd");
  await mkdir(path.join(damaged, "runtime", "wal"), { recursive: true });
  await writeFile(path.join(damaged, "runtime", "wal", "torn.wal.jsonl"), "{");
  const overDamaged = await restore(damaged);
  assert.equal(overDamaged.code, 0, overDamaged.stderr);
  assert.ok((await readdir(path.join(damaged, "backlog"))).length > 0, "restored over the remnant");
  // The Python original's workspace as it is, and one restored from its archive.
  const python = path.join(dir, "py");
  await cp(path.join(PYTHON_REFERENCE, "workspace"), python, { recursive: true });
  const overPython = await restore(path.join(python, ".sdd"));
  assert.equal(overPython.code, 0, overPython.stderr);
  const fromPython = path.join(dir, "from-py", ".sdd");
  const pr = await runCli(
    ["dr", "restore", "--from", path.join(PYTHON_REFERENCE, "backup-plain.tar.gz"), "--sdd", fromPython],
    { env },
  );
  assert.equal(pr.code, 0, pr.stderr);
  const overRestored = await restore(fromPython);
  assert.equal(overRestored.code, 0, overRestored.stderr);

  // `--sdd .` inside a workspace's .sdd: a workspace, so replaced; the shell is told where it is.
  const inside = await restore(".", ws.root, "--no-keep");
  assert.equal(inside.code, 0, inside.stderr);
  assert.match(inside.stderr, /warning: the working folder was the target and was removed \(--no-keep\)/);
  assert.ok((await readdir(path.dirname(ws.root))).includes(".sdd"), "the restored workspace is in place");
});
