/**
 * Worktree tasks in a run: the spawn's worktree inputs (branch, base commit, target branch), the
 * worktree the agent runs in, and, once the agent exits 0, its leftovers committed and the
 * `task_merged` decision (git/merge-decision.ts). The merge's outcome is in the state
 * (`merge_attempt`, `merge_commit`), so an outcome decided before a crash is never decided again.
 */
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import type { JsonObject } from "../json/object.js";
import { listRuns, readWalEntries } from "../wal/reader.js";
import type { Workspace } from "../workspace/layout.js";
import { rebaseTaskBranch } from "./git/merge.js";
import {
  cleanUpAfterMerge,
  decideMerge,
  type MergeInputs,
  type MergeOutcome,
  type MergeSettings,
} from "./git/merge-decision.js";
import {
  branchCommit,
  branchExists,
  checkedOutBranch,
  halfDoneMerge,
  isRepo,
  requireRepo,
} from "./git/repo.js";
import { addTaskWorktree, commitLeftovers, taskBranch, taskWorktreePath } from "./git/worktree.js";
import type { OrchestratorOptions } from "./options.js";
import type { RunContext } from "./run-context.js";
import type { TaskSpec } from "./task-spec.js";
import type { SessionView, TaskView } from "./view.js";

/** What a worktree attempt's `task_spawn_confirmed` records besides task, attempt and agent. */
export interface WorktreeSpawnInputs {
  branch: string;
  base_commit: string;
  target_branch: string;
}

export function usesWorktree(opts: OrchestratorOptions, spec: TaskSpec): boolean {
  return opts.worktrees.all || spec.worktree === true;
}

/** The branch merges go into: the configured one, else the branch checked out in the main worktree. */
async function targetBranch(repo: string, opts: OrchestratorOptions): Promise<string> {
  return opts.worktrees.targetBranch ?? (await checkedOutBranch(repo));
}

/** Has any run of this workspace written a `task_merged` for `headCommit` (a MERGE_HEAD of ours)? */
async function mergeOfOurs(ws: Workspace, headCommit: string): Promise<boolean> {
  for (const run of await listRuns(ws)) {
    for await (const { entry } of readWalEntries(run.file)) {
      if (entry.decision_type === "task_merged" && entry.inputs.head_commit === headCommit) return true;
    }
  }
  return false;
}

/**
 * `start` with `worktrees: true`: the repository must be usable before anything runs — a
 * repository, git on PATH, a branch checked out (or the configured target existing), and no merge
 * in progress except one of ours that replay finishes.
 */
export async function preflightWorktrees(ws: Workspace, opts: OrchestratorOptions): Promise<void> {
  if (!opts.worktrees.all) return;
  const repo = ws.projectDir;
  await requireRepo(repo, opts.worktrees.allSetBy ?? "--worktrees");
  await branchCommit(repo, await targetBranch(repo, opts));
  const half = await halfDoneMerge(repo);
  if (half.merge_head !== null && !(await mergeOfOurs(ws, half.merge_head))) {
    throw new UserError(
      `${repo}: a merge is already in progress (MERGE_HEAD ${half.merge_head.slice(0, 12)}), not started by bernstein; finish it or run 'git merge --abort'`,
      ExitCode.USAGE,
    );
  }
}

/** The inputs of a worktree spawn; a problem with the repository is a UserError (the task fails). */
export async function worktreeSpawnInputs(
  ctx: RunContext,
  taskId: string,
  attempt: number,
): Promise<WorktreeSpawnInputs> {
  const repo = ctx.ws.projectDir;
  const worktrees = ctx.opts.worktrees;
  await requireRepo(
    repo,
    worktrees.all ? (worktrees.allSetBy ?? "--worktrees") : `\`worktree: true\` from task ${taskId}'s file`,
  );
  const target = await targetBranch(repo, ctx.opts);
  const base = await branchCommit(repo, target);
  const branch = taskBranch(taskId, attempt);
  if (!existsSync(taskWorktreePath(ctx.ws.root, taskId, attempt)) && (await branchExists(repo, branch))) {
    throw new UserError(
      `branch '${branch}' already exists in ${repo} (not made by this attempt)`,
      ExitCode.USAGE,
    );
  }
  return { branch, base_commit: base, target_branch: target };
}

/** The recorded worktree inputs of a spawn intent, when it had them. */
export function recordedWorktree(inputs: JsonObject): WorktreeSpawnInputs | undefined {
  const { branch, base_commit, target_branch } = inputs;
  if (typeof branch !== "string" || typeof base_commit !== "string" || typeof target_branch !== "string")
    return undefined;
  return { branch, base_commit, target_branch };
}

/** Creates (or finds, on a replayed spawn) the attempt's worktree; returns its folder. */
export async function createTaskWorktree(
  ctx: RunContext,
  taskId: string,
  attempt: number,
  w: WorktreeSpawnInputs,
): Promise<string> {
  const dir = taskWorktreePath(ctx.ws.root, taskId, attempt);
  await addTaskWorktree(ctx.ws.projectDir, dir, w.branch, w.base_commit);
  return dir;
}

function mergeSettings(ctx: RunContext, taskId: string, attempt: number, title: string): MergeSettings {
  const w = ctx.opts.worktrees;
  return {
    repo: ctx.ws.projectDir,
    worktreePath: taskWorktreePath(ctx.ws.root, taskId, attempt),
    title,
    strategy: w.strategy,
    identity: w.identity,
    keepBranch: w.keepBranches,
  };
}

/**
 * Commits the agent's leftovers and merges (or finds the outcome a previous run already committed).
 * `waiting`: nothing was decided; the completion is handled again in a later pass.
 */
export async function mergeAttempt(ctx: RunContext, s: SessionView, t: TaskView): Promise<MergeOutcome> {
  const rec = ctx.dlog.state.tasks[t.id];
  if (rec?.merge_attempt === s.attempt) {
    if (typeof rec.merge_commit === "string")
      return { state: "merged", merge_commit: rec.merge_commit, already: true };
    return { state: "conflict", reason: "merge_conflict", paths: [] };
  }
  const settings = mergeSettings(ctx, t.id, s.attempt, t.spec.title);
  if (!existsSync(settings.worktreePath))
    return { state: "conflict", reason: `worktree ${settings.worktreePath} is missing`, paths: [] };
  const w = ctx.opts.worktrees;
  let head = await commitLeftovers(settings.worktreePath, `task ${t.id}: ${t.spec.title}`, w.identity);
  if (w.strategy === "rebase") {
    const r = await rebaseTaskBranch(settings.worktreePath, `refs/heads/${s.target_branch!}`, w.identity);
    if (!r.merged) return { state: "conflict", reason: r.reason, paths: r.paths };
    head = r.merge_commit;
  }
  const inputs: MergeInputs = {
    task_id: t.id,
    attempt: s.attempt,
    branch: s.branch!,
    head_commit: head,
    target_branch: s.target_branch!,
  };
  const outcome = await decideMerge(ctx.dlog, inputs, settings);
  if (outcome.state === "merged") {
    await ctx.dlog.auditTask("task.merged", t.id, { attempt: s.attempt, merge_commit: outcome.merge_commit });
  }
  return outcome;
}

/** Logs a waiting merge once per reason; clears the note once it no longer waits. */
export function noteMergeWait(ctx: RunContext, taskId: string, why: string | null): void {
  if (why === null) {
    ctx.mergeWaits.delete(taskId);
    return;
  }
  if (ctx.mergeWaits.get(taskId) === why) return;
  ctx.mergeWaits.set(taskId, why);
  ctx.opts.log?.(`task ${taskId} waits to merge: ${why}`);
}

/** Replay: a `task_merged` intent without its commit is finished by the same idempotent action. */
export function mergeReplay(ctx: RunContext): Record<string, (e: { inputs: JsonObject }) => Promise<void>> {
  return {
    task_merged: async (e) => {
      const inputs = e.inputs as unknown as MergeInputs;
      const rec = ctx.dlog.state.tasks[inputs.task_id];
      if (!rec || rec.merge_attempt === inputs.attempt) return;
      const title = String(rec.spec.title ?? inputs.task_id);
      await decideMerge(ctx.dlog, inputs, mergeSettings(ctx, inputs.task_id, inputs.attempt, title), true);
    },
  };
}

/**
 * Start-up sweep: worktrees and branches of merged attempts that a crash during the cleanup left
 * behind are removed (their work is on the target branch).
 */
export async function sweepMergedWorktrees(ctx: RunContext): Promise<number> {
  const folders = await readdir(path.join(ctx.ws.root, "worktrees")).catch(() => [] as string[]);
  const merged = Object.entries(ctx.dlog.state.tasks).filter(([, r]) => typeof r.merge_commit === "string");
  if (merged.length === 0 || !(await isRepo(ctx.ws.projectDir))) return 0;
  let swept = 0;
  for (const [id, r] of merged) {
    const attempt = r.merge_attempt!;
    const branch = taskBranch(id, attempt);
    const settings = mergeSettings(ctx, id, attempt, String(r.spec.title ?? id));
    const leftBranch = !settings.keepBranch && (await branchExists(ctx.ws.projectDir, branch));
    if (!folders.includes(`${id}-${attempt}`) && !leftBranch) continue;
    const inputs = { task_id: id, attempt, branch, head_commit: "", target_branch: "" };
    await cleanUpAfterMerge(inputs, settings, true);
    swept++;
  }
  return swept;
}
