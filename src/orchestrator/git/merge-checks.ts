/**
 * `doctor`'s checks of the git side of a workspace whose tasks merge: a stuck merge in the main
 * worktree, merges the WAL recorded that the target branch does not contain (a repository restored
 * from an older copy than its workspace), and worktrees or branches of merged task attempts that
 * a crash left behind. A workspace that never merged and has no task worktree has nothing to check.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import type { DoctorCheck, Verdict } from "../doctor-check.js";
import { listRuns, readWalEntries } from "../../wal/reader.js";
import type { Workspace } from "../../workspace/layout.js";
import { halfDoneMerge, isRepo } from "./repo.js";
import { git, runGit } from "./run-git.js";

interface RecordedMerge {
  agent: string;
  branch: string;
  target_branch: string;
  merge_commit: string;
}

function check(name: string, verdict: Verdict, detail: string, fix = ""): DoctorCheck {
  return { name, ok: verdict !== "fail", verdict, detail, fix };
}

/** Every `task_merged` commit entry that merged (streamed over all runs). */
async function recordedMerges(ws: Workspace): Promise<RecordedMerge[]> {
  const merges: RecordedMerge[] = [];
  for (const run of await listRuns(ws)) {
    // Doctor's wal check verifies every chain: here only the merges are read.
    for await (const { entry } of readWalEntries(run.file, {
      verify: false,
      decisionTypes: ["task_merged"],
    })) {
      if (!entry.committed) continue;
      if (typeof entry.output.merge_commit !== "string") continue;
      merges.push({
        agent: `${String(entry.inputs.task_id)}-${String(entry.inputs.attempt)}`,
        branch: String(entry.inputs.branch),
        target_branch: String(entry.inputs.target_branch),
        merge_commit: entry.output.merge_commit,
      });
    }
  }
  return merges;
}

async function isAncestor(repo: string, commit: string, branch: string): Promise<boolean> {
  return (await runGit(repo, ["merge-base", "--is-ancestor", commit, `refs/heads/${branch}`])).code === 0;
}

async function missingMerges(repo: string, merges: RecordedMerge[]): Promise<DoctorCheck> {
  const missing = [];
  for (const m of merges) if (!(await isAncestor(repo, m.merge_commit, m.target_branch))) missing.push(m);
  if (missing.length === 0)
    return check("git-merges", "pass", `${merges.length} recorded merge(s) present on their target branches`);
  const first = missing[0]!;
  return check(
    "git-merges",
    "fail",
    `${missing.length} merge(s) recorded in the WAL are missing from the repository (first: task ${first.agent}, ${first.merge_commit.slice(0, 12)} not on ${first.target_branch}); the repository is behind its WAL`,
    "restore the repository to a copy that holds these merges, or re-run the tasks",
  );
}

async function leftovers(ws: Workspace, repo: string, merges: RecordedMerge[]): Promise<DoctorCheck> {
  const merged = new Set(merges.map((m) => m.agent));
  const folders = await readdir(path.join(ws.root, "worktrees")).catch(() => [] as string[]);
  const branches = (await git(repo, ["branch", "--list", "--format=%(refname:short)", "bernstein/*"]))
    .split("\n")
    .filter((b) => b !== "");
  const orphans = [
    ...folders.filter((f) => merged.has(f)).map((f) => `worktree .sdd/worktrees/${f}`),
    ...branches.filter((b) => merged.has(b.slice("bernstein/".length))).map((b) => `branch ${b}`),
  ];
  if (orphans.length === 0)
    return check("git-worktrees", "pass", `${folders.length} task worktree(s), none of a merged task`);
  return check(
    "git-worktrees",
    "warn",
    `${orphans.length} worktree(s)/branch(es) of merged tasks left behind: ${orphans.slice(0, 3).join(", ")}`,
    "git worktree remove --force <path>; git branch -D <branch> (their work is merged)",
  );
}

export async function gitMergeChecks(ws: Workspace): Promise<DoctorCheck[]> {
  const repo = ws.projectDir;
  const merges = await recordedMerges(ws);
  const worktrees = await readdir(path.join(ws.root, "worktrees")).catch(() => [] as string[]);
  if (merges.length === 0 && worktrees.length === 0) return []; // this workspace does not merge
  if (!(await isRepo(repo))) {
    if (merges.length === 0) return [];
    return [
      check(
        "git-merges",
        "fail",
        `the WAL records ${merges.length} merge(s) but ${repo} is not a git repository`,
        "restore the repository beside .sdd/",
      ),
    ];
  }
  const half = await halfDoneMerge(repo);
  const stuck = half.merge_head
    ? check(
        "git-merge-state",
        "fail",
        `a merge is stuck in ${repo} (MERGE_HEAD ${half.merge_head.slice(0, 12)}${half.index_lock ? ", index.lock held" : ""})`,
        "`bernstein start` finishes a merge of its own; otherwise git merge --abort",
      )
    : half.index_lock
      ? check(
          "git-merge-state",
          "warn",
          `${repo}/.git/index.lock exists (a git process runs, or one died holding it)`,
          "remove it once no git process runs",
        )
      : check("git-merge-state", "pass", "no merge in progress in the main worktree");
  return [stuck, await missingMerges(repo, merges), await leftovers(ws, repo, merges)];
}
