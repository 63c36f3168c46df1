/**
 * `task_claimed` (file to `claimed/`), then `task_spawn_confirmed`: the attempt's wrapper started
 * detached, in its own process group, between the intent and the commit. A task no agent can run
 * fails terminally instead of spawning.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { resolveInvocation, type Invocation } from "../agents.js";
import type { RunContext } from "../run-context.js";
import { sessions, taskView, type TaskView } from "../view.js";
import { WRAPPER_MAIN, agentIdOf, agentLogPath, hasRunOnceToken, type WrapperJob } from "../wrapper.js";
import { UserError } from "../../errors/errors.js";
import type { JsonObject } from "../../json/object.js";
import { taskWorktreePath } from "../git/worktree.js";
import {
  createTaskWorktree,
  recordedWorktree,
  usesWorktree,
  worktreeSpawnInputs,
  type WorktreeSpawnInputs,
} from "../worktree-tasks.js";
import { fail } from "./fail.js";
import { intentInputs, type ReplayHandlers } from "./replay.js";
import { FILE_MODE } from "../../workspace/durable.js";
import { launcherEnv, launcherFlags } from "../../workspace/launcher.js";

export async function claimAndSpawn(ctx: RunContext, t: TaskView): Promise<void> {
  // task_retry records the next attempt's number; an attempt number whose run-once token was
  // never created ran no process and is used (again) as is. Otherwise: a new number.
  const unused = t.attempt > 0 && !(await hasRunOnceToken(ctx.ws, agentIdOf(t.id, t.attempt)));
  const attempt = unused ? t.attempt : t.attempt + 1;
  await ctx.dlog.decide("task_claimed", { task_id: t.id, attempt }, async () => {
    await ctx.files.move(t.id, "claimed");
  });
  await ctx.dlog.auditTask("task.claimed", t.id, { attempt });
  const claimed = taskView(ctx.dlog.state, t.id)!;
  await spawnAgent(ctx, claimed, attempt, agentIdOf(t.id, attempt));
}

/**
 * spawn intent → start the wrapper (detached, own process group) → commit. A worktree attempt
 * records its branch, base commit and target branch in the intent and runs in its worktree; a replay
 * passes the intent's inputs (`recorded`), so the worktree is made from the same base.
 */
async function spawnAgent(
  ctx: RunContext,
  t: TaskView,
  attempt: number,
  agentId: string,
  recorded?: JsonObject,
): Promise<void> {
  const worktree = await worktreeOf(ctx, t, attempt, recorded);
  if (typeof worktree === "string") return failTerminally(ctx, t.id, attempt, worktree);
  const workdir = worktree ? taskWorktreePath(ctx.ws.root, t.id, attempt) : ctx.ws.projectDir;
  const res = await resolveInvocation(ctx.agentsCfg, ctx.ws, t.spec, workdir);
  if (!res.ok) return failTerminally(ctx, t.id, attempt, res.reason);
  const inputs = { task_id: t.id, attempt, agent_id: agentId, ...worktree };
  await ctx.dlog.decide("task_spawn_confirmed", inputs, async () => {
    if (worktree) await createTaskWorktree(ctx, t.id, attempt, worktree);
    const child = startWrapper(ctx, t, attempt, agentId, res.invocation);
    ctx.agents.spawned({ agent_id: agentId, task_id: t.id, attempt }, child, t.spec.timeout_s, () =>
      ctx.wake(),
    );
  });
  await ctx.dlog.auditTask("task.spawned", t.id, { attempt, agent_id: agentId, agent: res.agent });
}

/** The attempt's worktree inputs; undefined: no worktree; a string: why the task cannot have one. */
async function worktreeOf(
  ctx: RunContext,
  t: TaskView,
  attempt: number,
  recorded?: JsonObject,
): Promise<WorktreeSpawnInputs | string | undefined> {
  if (recorded) return recordedWorktree(recorded);
  if (!usesWorktree(ctx.opts, t.spec)) return undefined;
  try {
    return await worktreeSpawnInputs(ctx, t.id, attempt);
  } catch (err) {
    if (err instanceof UserError) return err.message;
    throw err;
  }
}

async function failTerminally(ctx: RunContext, taskId: string, attempt: number, reason: string) {
  await fail(ctx, taskId, attempt, null, {
    reason,
    exit_code: null,
    terminal: true,
    cost_usd: 0,
    input_tokens: 0,
    output_tokens: 0,
    model: null,
  });
}

function startWrapper(
  ctx: RunContext,
  t: TaskView,
  attempt: number,
  agentId: string,
  invocation: Invocation,
): ChildProcess {
  const job: WrapperJob = {
    sdd: ctx.ws.root,
    agent_id: agentId,
    task_id: t.id,
    attempt,
    argv: invocation.argv,
    cwd: invocation.cwd,
    env: invocation.env,
    timeout_s: t.spec.timeout_s,
  };
  const logFd = openSync(agentLogPath(ctx.ws, agentId), "a", FILE_MODE);
  try {
    return spawn(process.execPath, [...launcherFlags(), WRAPPER_MAIN, JSON.stringify(job)], {
      cwd: invocation.cwd,
      detached: true,
      stdio: ["ignore", logFd, logFd],
      env: launcherEnv(),
    });
  } finally {
    closeSync(logFd);
  }
}

export function claimReplay(ctx: RunContext): ReplayHandlers {
  return {
    task_claimed: async (e) => {
      // An orphaned claim: the claim never committed, so no agent was spawned. Put the file back.
      const { task_id, attempt } = intentInputs(e);
      const t = task_id ? taskView(ctx.dlog.state, task_id) : undefined;
      if (!t || t.attempt >= (attempt ?? 0) || t.state !== "open") return;
      await ctx.files.move(t.id, "open");
      ctx.recovery.orphaned_claims_requeued++;
    },
    task_spawn_confirmed: async (e) => {
      const { task_id, attempt, agent_id } = intentInputs(e);
      if (!task_id || attempt === undefined || !agent_id) return;
      const t = taskView(ctx.dlog.state, task_id);
      if (!t || t.state !== "claimed" || t.attempt !== attempt) return;
      if (sessions(ctx.dlog.state).some((s) => s.agent_id === agent_id)) return;
      // The wrapper may or may not have started. Spawn it again: its run-once token
      // (runtime/agents/<agent_id>.json, created O_EXCL) makes the duplicate exit without running.
      await spawnAgent(ctx, t, attempt, agent_id, e.inputs);
    },
  };
}
