/**
 * What a backup records of the repository beside its workspace (`repository` in the manifest):
 * HEAD's commit and branch as git itself names them, null where there is no commit to name.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { repositoryHead } from "../../src/orchestrator/git/repo.js";
import { scratchDir } from "../helpers.js";
import { gitSync, makeRepo } from "./support/git-repo.js";

test("repositoryHead: branch, nested folder, detached HEAD, a ref named HEAD; null outside a work tree and before the first commit", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-repo-head-");
  try {
    assert.equal(await repositoryHead(path.join(dir, "missing")), null);
    assert.equal(await repositoryHead(dir), null, "not a repository");

    const empty = path.join(dir, "empty");
    await mkdir(empty);
    gitSync(empty, "init", "--quiet", "-b", "main");
    assert.equal(await repositoryHead(empty), null, "no commit yet");

    const repo = path.join(dir, "repo");
    const first = await makeRepo(repo, { "README.md": "hello\n" });
    const branch = gitSync(repo, "symbolic-ref", "--short", "HEAD");
    assert.deepEqual(await repositoryHead(repo), { commit: first, branch });

    const nested = path.join(repo, "a", "b");
    await mkdir(nested, { recursive: true });
    gitSync(repo, "checkout", "--quiet", "-b", "feature/x");
    assert.deepEqual(await repositoryHead(nested), { commit: first, branch: "feature/x" });

    gitSync(repo, "checkout", "--quiet", "--detach");
    assert.deepEqual(await repositoryHead(repo), { commit: first, branch: null });
    gitSync(repo, "checkout", "--quiet", "feature/x");

    assert.equal(await repositoryHead(path.join(repo, ".git")), null, "inside .git: no work tree");

    // A tag named HEAD makes the name ambiguous to rev-parse; the branch is still the one checked out.
    gitSync(repo, "tag", "HEAD");
    assert.deepEqual(await repositoryHead(repo), { commit: first, branch: "feature/x" });
  } finally {
    await cleanup();
  }
});

/** Whether `dir` or a folder above it holds `.git` (git would find a repository from there). */
function underARepository(dir: string): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, ".git"))) return true;
    if (path.dirname(d) === d) return false;
  }
}

test("repositoryHead starts git only where git could find a work tree: a .git above, or GIT_DIR / GIT_WORK_TREE set", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-repo-head-spawn-");
  const saved = {
    PATH: process.env.PATH,
    GIT_DIR: process.env.GIT_DIR,
    GIT_WORK_TREE: process.env.GIT_WORK_TREE,
  };
  try {
    if (underARepository(dir)) {
      t.skip(`the scratch folder ${dir} is inside a git repository: no folder here is outside one`);
      return;
    }
    // A git on PATH that notes each call, then runs the real one.
    const realGit = execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim();
    const shimDir = path.join(dir, "bin");
    const calls = path.join(dir, "git-calls");
    await mkdir(shimDir);
    await writeFile(
      path.join(shimDir, "git"),
      `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${realGit}' "$@"\n`,
    );
    await chmod(path.join(shimDir, "git"), 0o755);
    const callCount = async (): Promise<number> =>
      existsSync(calls) ? (await readFile(calls, "utf8")).split("\n").filter(Boolean).length : 0;
    delete process.env.GIT_DIR;
    delete process.env.GIT_WORK_TREE;
    process.env.PATH = `${shimDir}${path.delimiter}${saved.PATH ?? ""}`;

    const outside = path.join(dir, "outside", "deep");
    await mkdir(outside, { recursive: true });
    assert.equal(await repositoryHead(outside), null);
    assert.equal(await callCount(), 0, "no .git anywhere above: git is not started");

    const repo = path.join(dir, "repo");
    const first = await makeRepo(repo, { "README.md": "hello\n" });
    const branch = gitSync(repo, "symbolic-ref", "--short", "HEAD");
    const before = await callCount();
    assert.deepEqual(await repositoryHead(path.join(repo)), { commit: first, branch });
    assert.equal(await callCount(), before + 1, "inside a repository: one git call");

    // GIT_DIR names the repository from anywhere; git takes the current folder as its work tree.
    process.env.GIT_DIR = path.join(repo, ".git");
    assert.deepEqual(await repositoryHead(outside), { commit: first, branch });
    delete process.env.GIT_DIR;
    process.env.GIT_WORK_TREE = repo;
    const withWorkTree = await callCount();
    await repositoryHead(outside);
    assert.equal(await callCount(), withWorkTree + 1, "GIT_WORK_TREE set: git decides");
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await cleanup();
  }
});
