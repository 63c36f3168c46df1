/**
 * `task_failed` (terminal when no retry is left or retrying cannot help), then `task_retry`: the
 * task back to open after a backoff, its next attempt's number recorded.
 */
import type { JsonObject } from "../../json/object.js";
import type { RunContext } from "../run-context.js";
import { sessions, taskView } from "../view.js";
import { intentInputs, type ReplayHandlers } from "./replay.js";

/** What a failed attempt reports; `terminal` null: decided by the task's retries left. */
export interface FailureFacts {
  reason: string;
  /** A refused merge: the conflicting paths (the task's branch is kept for a human). */
  paths?: string[];
  exit_code: number | null;
  terminal: boolean | null;
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  model: string | null;
}

export async function fail(
  ctx: RunContext,
  taskId: string,
  attempt: number,
  agentId: string | null,
  facts: FailureFacts,
): Promise<void> {
  const t = taskView(ctx.dlog.state, taskId)!;
  const terminal = facts.terminal ?? t.failures + 1 > t.spec.max_retries;
  const out = { ...facts, terminal } as JsonObject;
  await ctx.dlog.decide(
    "task_failed",
    { task_id: taskId, attempt },
    async () => {
      if (agentId)
        await ctx.costRows.append({ run_id: ctx.dlog.runId, task_id: taskId, agent_id: agentId }, out);
      if (terminal) await ctx.files.move(taskId, "failed");
    },
    out,
  );
  await ctx.dlog.auditTask("task.failed", taskId, { attempt, ...out });
  if (terminal) {
    ctx.outcome.failed.add(taskId);
    ctx.warn(`task ${taskId} failed: ${facts.reason}`, "failed task");
  } else await retry(ctx, taskId, attempt);
}

export async function retry(ctx: RunContext, taskId: string, attempt: number): Promise<void> {
  const t = taskView(ctx.dlog.state, taskId)!;
  await ctx.dlog.decide("task_retry", { task_id: taskId, attempt: attempt + 1 }, async () => {
    await ctx.files.move(taskId, "open");
  });
  await ctx.dlog.auditTask("task.retry", taskId, { attempt: attempt + 1 });
  ctx.backoff.hold(taskId, t.failures);
}

export function retryReplay(ctx: RunContext): ReplayHandlers {
  return {
    task_retry: async (e) => {
      const { task_id, attempt } = intentInputs(e);
      const t = task_id ? taskView(ctx.dlog.state, task_id) : undefined;
      if (!t || t.state !== "claimed" || sessions(ctx.dlog.state).some((s) => s.task_id === t.id)) return;
      await ctx.dlog.commit("task_retry", e.inputs, {});
      await ctx.files.move(t.id, "open");
      await ctx.dlog.auditTask("task.retry", t.id, { attempt: attempt ?? t.attempt + 1 });
    },
  };
}
