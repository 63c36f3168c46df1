import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import {
  branchCommit,
  checkedOutBranch,
  containsCommit,
  dirtyPaths,
  halfDoneMerge,
  isRepo,
  mainWorktreeOf,
  requireRepo,
} from "../../src/orchestrator/git/repo.js";
import {
  abortOurHalfDoneMerge,
  findMergeCommit,
  mergeHead,
  rebaseTaskBranch,
} from "../../src/orchestrator/git/merge.js";
import { runGit } from "../../src/orchestrator/git/run-git.js";
import {
  addTaskWorktree,
  commitLeftovers,
  deleteBranch,
  removeTaskWorktree,
  taskBranch,
  taskWorktreePath,
} from "../../src/orchestrator/git/worktree.js";
import { scratchDir } from "../helpers.js";
import { gitSync, makeRepo, TEST_IDENTITY } from "./support/git-repo.js";

const identity = TEST_IDENTITY;

/** A task worktree on its own branch with `file` changed and left uncommitted. */
async function taskWithChange(repo: string, id: string, file: string, content: string) {
  const base = gitSync(repo, "rev-parse", "main");
  const wt = taskWorktreePath(path.join(repo, ".sdd"), id, 1);
  const branch = taskBranch(id, 1);
  await addTaskWorktree(repo, wt, branch, base);
  await writeFile(path.join(wt, file), content);
  const head = await commitLeftovers(wt, `task ${id}: change ${file}`, identity);
  return { wt, branch, head };
}

test("is-repo, main worktree, checked-out branch, missing branch, detached HEAD", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    assert.equal(await isRepo(dir), false);
    await assert.rejects(
      requireRepo(dir, "--worktree"),
      (e: unknown) => e instanceof UserError && e.exitCode === 2 && /not a git repository/.test(e.message),
    );
    const first = await makeRepo(dir);
    assert.equal(await isRepo(dir), true);
    assert.equal(await checkedOutBranch(dir), "main");
    assert.equal(await branchCommit(dir, "main"), first);
    await assert.rejects(
      branchCommit(dir, "nope"),
      (e: unknown) => e instanceof UserError && e.exitCode === 2,
    );
    const t = await taskWithChange(dir, "t1", "a.txt", "a\n");
    assert.equal(await mainWorktreeOf(t.wt), dir);
    gitSync(dir, "checkout", "--quiet", "--detach", "main");
    await assert.rejects(checkedOutBranch(dir), /detached/);
  } finally {
    await cleanup();
  }
});

test("git missing from PATH is one usage error", async () => {
  const { dir, cleanup } = await scratchDir();
  const saved = process.env.PATH;
  try {
    process.env.PATH = dir;
    await assert.rejects(
      runGit(dir, ["status"]),
      (e: unknown) =>
        e instanceof UserError && e.exitCode === 2 && /git binary was not found/.test(e.message),
    );
  } finally {
    process.env.PATH = saved;
    await cleanup();
  }
});

test("worktree add/remove, leftovers committed with the configured identity, branch collision, branch delete", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await makeRepo(dir);
    const t = await taskWithChange(dir, "t1", "a.txt", "a\n");
    assert.equal(
      gitSync(t.wt, "log", "-1", "--format=%an <%ae>|%cn|%s"),
      `${identity.name} <${identity.email}>|${identity.name}|task t1: change a.txt`,
    );
    // Replayed spawn: the same worktree on the same branch is kept.
    await addTaskWorktree(dir, t.wt, t.branch, gitSync(dir, "rev-parse", "main"));
    // Nothing left over: no empty commit.
    assert.equal(await commitLeftovers(t.wt, "again", identity), t.head);
    gitSync(dir, "branch", "bernstein/t2-1");
    await assert.rejects(
      addTaskWorktree(dir, taskWorktreePath(path.join(dir, ".sdd"), "t2", 1), "bernstein/t2-1", "main"),
      (e: unknown) => e instanceof UserError && e.exitCode === 2 && /already exists/.test(e.message),
    );
    await removeTaskWorktree(dir, t.wt);
    assert.equal(existsSync(t.wt), false);
    await removeTaskWorktree(dir, t.wt); // idempotent
    await deleteBranch(dir, t.branch);
    await deleteBranch(dir, t.branch);
    assert.equal(gitSync(dir, "branch", "--list", t.branch), "");
  } finally {
    await cleanup();
  }
});

test("--no-ff merge names the task; ancestry answers; the merge commit is found again", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await makeRepo(dir);
    const t = await taskWithChange(dir, "t1", "a.txt", "a\n");
    assert.equal(await containsCommit(dir, "main", t.head), false);
    const r = await mergeHead(dir, {
      head_commit: t.head,
      message: "Merge task t1",
      strategy: "merge",
      identity,
    });
    assert.ok(r.merged);
    assert.equal(
      gitSync(dir, "log", "-1", "--format=%s|%P", "main"),
      `Merge task t1|${gitSync(dir, "rev-parse", "HEAD^1")} ${t.head}`,
    );
    assert.equal(await containsCommit(dir, "main", t.head), true);
    assert.equal(await findMergeCommit(dir, "main", t.head), r.merge_commit);
    // A later merge on top does not change which commit merged t1.
    const u = await taskWithChange(dir, "t2", "b.txt", "b\n");
    await mergeHead(dir, { head_commit: u.head, message: "Merge task t2", strategy: "merge", identity });
    assert.equal(await findMergeCommit(dir, "main", t.head), r.merge_commit);
  } finally {
    await cleanup();
  }
});

test("a conflict is aborted cleanly with its paths; the main worktree is exactly as before", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await makeRepo(dir, { "same.txt": "base\n" });
    const a = await taskWithChange(dir, "a", "same.txt", "from a\n");
    const b = await taskWithChange(dir, "b", "same.txt", "from b\n");
    assert.ok(
      (await mergeHead(dir, { head_commit: a.head, message: "Merge a", strategy: "merge", identity })).merged,
    );
    const before = gitSync(dir, "rev-parse", "HEAD");
    const r = await mergeHead(dir, { head_commit: b.head, message: "Merge b", strategy: "merge", identity });
    assert.deepEqual(r, { merged: false, reason: "merge_conflict", paths: ["same.txt"] });
    assert.equal(gitSync(dir, "rev-parse", "HEAD"), before);
    assert.deepEqual(await dirtyPaths(dir), []);
    assert.deepEqual(await halfDoneMerge(dir), { merge_head: null, index_lock: false });
    assert.equal(await readFile(path.join(dir, "same.txt"), "utf8"), "from a\n");
  } finally {
    await cleanup();
  }
});

test("ff-only and rebase strategies; a rebase conflict is aborted", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await makeRepo(dir, { "same.txt": "base\n" });
    const a = await taskWithChange(dir, "a", "a.txt", "a\n");
    const b = await taskWithChange(dir, "b", "b.txt", "b\n");
    const c = await taskWithChange(dir, "c", "same.txt", "c\n");
    assert.deepEqual(
      await mergeHead(dir, { head_commit: a.head, message: "x", strategy: "ff-only", identity }),
      { merged: true, merge_commit: a.head },
    );
    assert.equal(gitSync(dir, "rev-parse", "main"), a.head);
    assert.equal(
      (await mergeHead(dir, { head_commit: b.head, message: "x", strategy: "ff-only", identity })).merged,
      false,
    );
    const rebased = await rebaseTaskBranch(b.wt, gitSync(dir, "rev-parse", "main"), identity);
    assert.ok(rebased.merged);
    assert.deepEqual(
      await mergeHead(dir, { head_commit: rebased.merge_commit, message: "x", strategy: "rebase", identity }),
      { merged: true, merge_commit: rebased.merge_commit },
    );
    gitSync(dir, "commit", "--quiet", "--allow-empty", "-m", "noop");
    await writeFile(path.join(dir, "same.txt"), "main\n");
    gitSync(dir, "commit", "--quiet", "-am", "main changes same.txt");
    const r = await rebaseTaskBranch(c.wt, gitSync(dir, "rev-parse", "main"), identity);
    assert.deepEqual(r, { merged: false, reason: "merge_conflict", paths: ["same.txt"] });
    assert.equal(gitSync(c.wt, "rev-parse", "HEAD"), c.head);
  } finally {
    await cleanup();
  }
});

test("dirty main worktree and half-done merges are detected; ours is aborted, a human's is refused", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await makeRepo(dir);
    await writeFile(path.join(dir, "human.txt"), "wip\n");
    assert.deepEqual(await dirtyPaths(dir), ["human.txt"]);
    gitSync(dir, "add", "human.txt");
    gitSync(dir, "commit", "--quiet", "-m", "human");
    const t = await taskWithChange(dir, "t1", "a.txt", "a\n");
    const u = await taskWithChange(dir, "t2", "b.txt", "b\n");
    gitSync(dir, "merge", "--no-ff", "--no-commit", "--quiet", t.head);
    await writeFile(path.join(dir, ".git", "index.lock"), "");
    assert.deepEqual(await halfDoneMerge(dir), { merge_head: t.head, index_lock: true });
    await assert.rejects(
      abortOurHalfDoneMerge(dir, u.head),
      (e: unknown) => e instanceof UserError && /already in progress/.test(e.message),
    );
    assert.equal(await abortOurHalfDoneMerge(dir, t.head), true);
    assert.deepEqual(await halfDoneMerge(dir), { merge_head: null, index_lock: false });
    assert.deepEqual(await dirtyPaths(dir), []);
  } finally {
    await cleanup();
  }
});
