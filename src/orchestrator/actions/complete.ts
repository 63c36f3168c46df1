/**
 * An attempt's outcome from its completion record: `task_completed` (ledger row, file to `done/`),
 * or a failure (fail.ts). The replay of both finishes from the intent alone: its output holds the
 * facts, because the record is removed once committed and older archives lack it.
 */
import type { WalEntry } from "../../wal/entry.js";
import { durableUnlink } from "../../workspace/durable.js";
import type { RunContext } from "../run-context.js";
import { sessions, taskView } from "../view.js";
import { agentIdOf, completionPath, type CompletionRecord } from "../wrapper.js";
import { mergeAttempt, noteMergeWait } from "../worktree-tasks.js";
import { fail, retry } from "./fail.js";
import type { ReplayHandlers } from "./replay.js";

export async function complete(ctx: RunContext, agentId: string, rec: CompletionRecord): Promise<void> {
  const tr = ctx.agents.get(agentId);
  const s = sessions(ctx.dlog.state).find((x) => x.agent_id === agentId);
  if (!s) return;
  const usage = {
    cost_usd: rec.cost_usd ?? 0,
    input_tokens: rec.input_tokens ?? 0,
    output_tokens: rec.output_tokens ?? 0,
    model: rec.model ?? null,
  };
  const t = taskView(ctx.dlog.state, s.task_id)!;
  const ok = rec.error === null && rec.exit_code === 0 && !rec.timed_out;
  if (ok && s.branch) {
    const merge = await mergeAttempt(ctx, s, t);
    // Nothing decided: the completion record stays and the next pass tries again.
    if (merge.state === "waiting") return noteMergeWait(ctx, s.task_id, merge.why);
    noteMergeWait(ctx, s.task_id, null);
    if (merge.state === "conflict") {
      await fail(ctx, s.task_id, s.attempt, agentId, {
        reason: merge.reason,
        paths: merge.paths,
        exit_code: 0,
        terminal: ctx.opts.worktrees.onConflict === "hold" ? true : false,
        ...usage,
      });
      return finish(ctx, agentId);
    }
  }
  if (ok) {
    const out = { exit_code: 0, ...usage };
    await ctx.dlog.decide(
      "task_completed",
      { task_id: s.task_id, attempt: s.attempt },
      async () => {
        await ctx.costRows.append({ run_id: ctx.dlog.runId, task_id: s.task_id, agent_id: agentId }, out);
        await ctx.files.move(s.task_id, "done");
      },
      out,
    );
    await ctx.dlog.auditTask("task.completed", s.task_id, { attempt: s.attempt, ...out });
    ctx.outcome.done.add(s.task_id);
  } else {
    const reason =
      rec.error ??
      (rec.timed_out
        ? `timed out after ${tr?.timeoutS ?? t.spec.timeout_s}s (process group killed)`
        : rec.signal
          ? `killed by ${rec.signal}`
          : `exit code ${rec.exit_code}`);
    await fail(ctx, s.task_id, s.attempt, agentId, {
      reason,
      exit_code: rec.exit_code,
      terminal: rec.error !== null && rec.error.startsWith("agent binary not found") ? true : null,
      ...usage,
    });
  }
  await finish(ctx, agentId);
}

/** The attempt is decided: no longer tracked, its completion record gone. */
async function finish(ctx: RunContext, agentId: string): Promise<void> {
  ctx.agents.forget(agentId);
  await durableUnlink(completionPath(ctx.ws, agentId)).catch(() => {});
}

export function outcomeReplay(ctx: RunContext): ReplayHandlers {
  return {
    task_completed: async (e) => replayOutcome(ctx, e, "task_completed"),
    task_failed: async (e) => replayOutcome(ctx, e, "task_failed"),
  };
}

/** Finishes a completion or failure whose intent (with its output) is durable but whose commit is not. */
async function replayOutcome(
  ctx: RunContext,
  e: WalEntry,
  type: "task_completed" | "task_failed",
): Promise<void> {
  const { task_id, attempt } = e.inputs as { task_id?: string; attempt?: number };
  if (!task_id || attempt === undefined) return;
  const t = taskView(ctx.dlog.state, task_id);
  const agentId = agentIdOf(task_id, attempt);
  if (!t || t.attempt !== attempt || !sessions(ctx.dlog.state).some((s) => s.agent_id === agentId)) return;
  const out = e.output;
  await ctx.costRows.append({ run_id: ctx.dlog.runId, task_id, agent_id: agentId }, out);
  if (type === "task_completed") {
    await ctx.files.move(task_id, "done");
    ctx.outcome.done.add(task_id);
  } else if (out.terminal === true) {
    await ctx.files.move(task_id, "failed");
    ctx.outcome.failed.add(task_id);
  }
  await ctx.dlog.commit(type, e.inputs, out);
  await ctx.dlog.auditTask(type === "task_completed" ? "task.completed" : "task.failed", task_id, {
    attempt,
    ...out,
  });
  if (type === "task_failed" && out.terminal !== true) await retry(ctx, task_id, attempt);
}
