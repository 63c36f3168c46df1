/**
 * What a backup records of the repository beside its workspace (`repository` in the manifest):
 * HEAD's commit and branch as git itself names them, null where there is no commit to name.
 */
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
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
