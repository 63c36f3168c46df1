/**
 * `start`'s flags for worktree tasks and their merges, the configuration file's `worktrees` and
 * `merge.*` keys (src/config/settings.ts) filling them, and what the background process of
 * `start --detach` gets passed again.
 */
import { Option, type Command } from "../vendor/commander.js";
import { MERGE_STRATEGIES, type MergeStrategy } from "../orchestrator/git/merge.js";
import { DEFAULT_IDENTITY } from "../orchestrator/git/run-git.js";
import { DEFAULT_WORKTREE_OPTIONS, type WorktreeOptions } from "../orchestrator/options.js";

export interface WorktreeStartFlags {
  worktrees?: boolean;
  mergeStrategy?: MergeStrategy;
  onConflict?: "requeue" | "hold";
  targetBranch?: string;
  keepBranches?: boolean;
  gitAuthorName?: string;
  gitAuthorEmail?: string;
}

export function addWorktreeStartOptions(cmd: Command): Command {
  return cmd
    .option("--worktrees", "run every task in its own git worktree and merge it on success")
    .addOption(
      new Option(
        "--merge-strategy <strategy>",
        "how a worktree task lands: merge (--no-ff, default), ff-only, rebase",
      ).choices(MERGE_STRATEGIES),
    )
    .addOption(
      new Option(
        "--on-conflict <what>",
        "a conflicting merge: requeue (a new attempt, default) or hold (failed, branch kept)",
      ).choices(["requeue", "hold"]),
    )
    .option("--target-branch <branch>", "the branch merged into (default: the one checked out)")
    .option("--keep-branches", "keep a task's branch after its merge")
    .option(
      "--git-author-name <name>",
      `author/committer of bernstein's commits (default ${DEFAULT_IDENTITY.name})`,
    )
    .option("--git-author-email <email>", `their email (default ${DEFAULT_IDENTITY.email})`);
}

/** `configFile`: the configuration file that set `worktrees: true`, when it was the file. */
export function worktreeOptionsOf(f: WorktreeStartFlags, configFile?: string): WorktreeOptions {
  const d = DEFAULT_WORKTREE_OPTIONS;
  return {
    all: Boolean(f.worktrees),
    ...(f.worktrees
      ? { allSetBy: configFile ? `\`worktrees: true\` from ${configFile}` : "--worktrees" }
      : {}),
    strategy: f.mergeStrategy ?? d.strategy,
    onConflict: f.onConflict ?? d.onConflict,
    ...(f.targetBranch ? { targetBranch: f.targetBranch } : {}),
    identity: { name: f.gitAuthorName ?? d.identity.name, email: f.gitAuthorEmail ?? d.identity.email },
    keepBranches: Boolean(f.keepBranches),
  };
}

/** The same choices as flags, for the background process of `start --detach`. */
export function worktreeArgs(f: WorktreeStartFlags): string[] {
  const args: string[] = [];
  if (f.worktrees) args.push("--worktrees");
  if (f.mergeStrategy) args.push("--merge-strategy", f.mergeStrategy);
  if (f.onConflict) args.push("--on-conflict", f.onConflict);
  if (f.targetBranch) args.push("--target-branch", f.targetBranch);
  if (f.keepBranches) args.push("--keep-branches");
  if (f.gitAuthorName) args.push("--git-author-name", f.gitAuthorName);
  if (f.gitAuthorEmail) args.push("--git-author-email", f.gitAuthorEmail);
  return args;
}
