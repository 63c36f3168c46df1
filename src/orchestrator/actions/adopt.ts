/**
 * `task_created`: a task file that appeared in `backlog/open/` (`task add`) becomes the run's, in
 * id order. Its whole spec goes into the WAL, so the file can be rebuilt from it (materialize.ts).
 */
import type { JsonObject } from "../../json/object.js";
import type { RunContext } from "../run-context.js";
import { taskView } from "../view.js";
import { intentInputs, type ReplayHandlers } from "./replay.js";

/** Adopts the new task files; returns how many. */
export async function adoptNewTasks(ctx: RunContext): Promise<number> {
  const fresh = await ctx.intake.newFiles(ctx.files.namesOfKnownTasks(ctx.dlog.state));
  let adopted = 0;
  for (const { spec, file } of fresh) {
    if (taskView(ctx.dlog.state, spec.id)) {
      await ctx.intake.reject(file);
      ctx.warn(
        `task file ${file} reuses id ${spec.id} of an existing task; left in place, not adopted`,
        "reused task id",
      );
      continue;
    }
    ctx.files.set(spec.id, file);
    await ctx.dlog.decide("task_created", { task: spec as unknown as JsonObject }, async () => {});
    await ctx.dlog.auditTask("task.created", spec.id, { title: spec.title });
    adopted++;
  }
  return adopted;
}

export function adoptReplay(ctx: RunContext): ReplayHandlers {
  return {
    task_created: async (e) => {
      const spec = intentInputs(e).task;
      if (!spec || taskView(ctx.dlog.state, spec.id)) return;
      await ctx.dlog.commit("task_created", e.inputs, {});
      await ctx.dlog.auditTask("task.created", spec.id, { title: spec.title });
    },
  };
}
