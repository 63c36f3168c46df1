/** `task_interrupted`: a claimed task back to open, a new attempt later (stop --force, orphaned claim, lost agent). */
import type { RunContext } from "../run-context.js";
import { taskView } from "../view.js";
import { intentInputs, type ReplayHandlers } from "./replay.js";

export async function interrupt(
  ctx: RunContext,
  taskId: string,
  attempt: number,
  reason: string,
): Promise<void> {
  await ctx.dlog.decide(
    "task_interrupted",
    { task_id: taskId, attempt },
    async () => {
      await ctx.files.move(taskId, "open");
    },
    { reason },
  );
  await ctx.dlog.auditTask("task.interrupted", taskId, { attempt, reason });
}

export function interruptReplay(ctx: RunContext): ReplayHandlers {
  return {
    task_interrupted: async (e) => {
      const { task_id } = intentInputs(e);
      const t = task_id ? taskView(ctx.dlog.state, task_id) : undefined;
      if (!t || t.state !== "claimed") return;
      await ctx.files.move(t.id, "open");
      await ctx.dlog.commit("task_interrupted", e.inputs, e.output);
      await ctx.dlog.auditTask("task.interrupted", t.id, {
        attempt: t.attempt,
        reason: String(e.output.reason ?? ""),
      });
    },
  };
}
