import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";
import { gitSync, makeRepo, mergeCommitsOf } from "./support/git-repo.js";

/**
 * The DR side of worktree tasks: a backup's manifest records the repository's HEAD, and `doctor` on
 * a workspace restored beside a repository that is behind the WAL's merges reports it.
 */
test("dr backup records the repository's HEAD; doctor on a restore beside an older repository reports the missing merges", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-wt-dr-");
  try {
    const repo = path.join(dir, "repo");
    const initial = await makeRepo(repo, { "README.md": "hello\n" });
    const sdd = path.join(repo, ".sdd");
    const { workspace } = await initWorkspace(sdd);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    const cli = (sddDir: string, ...args: string[]) =>
      runCli(["--sdd", sddDir, ...args], { cwd: path.dirname(sddDir), env });
    await addTask(workspace, { id: "m", title: "m", command: "echo m > m.txt", worktree: true });
    const run = await cli(sdd, "start", "--until-idle", "--poll", "20");
    assert.equal(run.code, 0, run.stderr);
    const [merge] = mergeCommitsOf(repo, "main", "m#1");
    assert.ok(merge);

    const archive = path.join(dir, "backup.tar.gz");
    const backup = await cli(sdd, "dr", "backup", "--to", archive, "--json");
    assert.equal(backup.code, 0, backup.stderr);
    const expected = { commit: gitSync(repo, "rev-parse", "HEAD"), branch: "main" };
    assert.deepEqual(JSON.parse(backup.stdout).repository, expected);
    const manifest = JSON.parse(
      execFileSync("tar", ["-xzf", archive, "-O", "manifest.json"], { encoding: "utf8" }),
    );
    assert.deepEqual(manifest.repository, expected);

    // Another host: the repository as it was before the merge, the workspace from the backup.
    const older = path.join(dir, "older");
    gitSync(dir, "clone", "--quiet", repo, older);
    gitSync(older, "reset", "--quiet", "--hard", initial);
    const restoredSdd = path.join(older, ".sdd");
    const restored = await cli(restoredSdd, "dr", "restore", "--from", archive, "--json");
    assert.equal(restored.code, 0, restored.stderr);
    const doctor = await cli(restoredSdd, "doctor", "--json");
    assert.equal(doctor.code, 1, doctor.stdout + doctor.stderr);
    const checks = JSON.parse(doctor.stdout).checks as { name: string; verdict: string; detail: string }[];
    const merges = checks.find((c) => c.name === "git-merges")!;
    assert.equal(merges.verdict, "fail");
    assert.match(merges.detail, new RegExp(`task m-1, ${merge.slice(0, 12)} not on main.*behind its WAL`));

    // The same workspace beside the repository that holds the merge: nothing missing.
    gitSync(older, "reset", "--quiet", "--hard", merge);
    const fine = await cli(restoredSdd, "doctor", "--json");
    const again = JSON.parse(fine.stdout).checks.find((c: { name: string }) => c.name === "git-merges");
    assert.equal(again.verdict, "pass", fine.stdout);
  } finally {
    await cleanup();
  }
});
