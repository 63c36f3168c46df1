/**
 * Random but realistic decision sequences for property tests: tasks are created, claimed,
 * spawned, completed, failed (terminal or retried) and interrupted; every action is an intent
 * followed (usually) by its commit; informational and foreign types are sprinkled in.
 */
import type { JsonObject } from "../../../src/json/object.js";
import { prng } from "../../helpers.js";

export interface DecisionRecord {
  decision_type: string;
  inputs: JsonObject;
  output: JsonObject;
  committed: boolean;
}

export function randomDecisions(seed: number, count: number): DecisionRecord[] {
  const r = prng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  const out: DecisionRecord[] = [];
  const tasks: { id: string; state: "open" | "claimed" | "running" | "done" | "failed"; attempt: number }[] =
    [];
  const models = ["sonnet", "opus", "haiku"];
  const act = (decision_type: string, inputs: JsonObject, output: JsonObject = {}) => {
    out.push({ decision_type, inputs, output: {}, committed: false });
    // Sometimes the process "crashed" between intent and commit: no commit.
    if (r() < 0.1) return false;
    out.push({ decision_type, inputs, output, committed: true });
    return true;
  };
  while (out.length < count) {
    const roll = r();
    if (roll < 0.05) {
      out.push({
        decision_type: pick(["tick_start", "checkpoint_written", "claim_confirmed"]),
        inputs: {},
        output: {},
        committed: r() < 0.5,
      });
      continue;
    }
    const open = tasks.filter((t) => t.state === "open");
    const claimed = tasks.filter((t) => t.state === "claimed");
    const running = tasks.filter((t) => t.state === "running");
    if (roll < 0.25 || tasks.length === 0) {
      const id = `T-${String(tasks.length).padStart(4, "0")}`;
      const spec = {
        id,
        title: `task ${tasks.length} caf\u00e9`,
        role: pick(["backend", "qa"]),
        priority: Math.floor(r() * 3),
      };
      if (act("task_created", { task: spec })) tasks.push({ id, state: "open", attempt: 0 });
    } else if (roll < 0.45 && open.length) {
      const t = pick(open);
      if (act("task_claimed", { task_id: t.id, attempt: t.attempt + 1 })) {
        t.state = "claimed";
        t.attempt++;
      }
    } else if (roll < 0.6 && claimed.length) {
      const t = pick(claimed);
      if (
        act("task_spawn_confirmed", { task_id: t.id, attempt: t.attempt, agent_id: `${t.id}#${t.attempt}` })
      )
        t.state = "running";
    } else if (roll < 0.8 && running.length) {
      const t = pick(running);
      const cost = Math.round(r() * 10000) / 1000;
      if (r() < 0.7) {
        if (
          act(
            "task_completed",
            { task_id: t.id, attempt: t.attempt },
            {
              exit_code: 0,
              cost_usd: cost,
              input_tokens: Math.floor(r() * 5000),
              output_tokens: Math.floor(r() * 900),
              model: pick(models),
            },
          )
        )
          t.state = "done";
      } else {
        const terminal = r() < 0.4;
        if (
          act(
            "task_failed",
            { task_id: t.id, attempt: t.attempt },
            { reason: "exit 1", exit_code: 1, terminal, cost_usd: cost, model: pick(models) },
          )
        ) {
          t.state = terminal ? "failed" : "claimed";
          if (!terminal && act("task_retry", { task_id: t.id, attempt: t.attempt + 1 })) t.state = "open";
        }
      }
    } else if (running.length || claimed.length) {
      const t = pick([...running, ...claimed]);
      if (act("task_interrupted", { task_id: t.id, attempt: t.attempt }, { reason: "orphaned claim" }))
        t.state = "open";
    }
  }
  return out.slice(0, count);
}
