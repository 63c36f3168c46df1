/**
 * A stop request (`bernstein stop`, Ctrl-C): drain (no new claims, wait up to the timeout for the
 * running agents, which keep running after it and are re-attached by the next start) or force
 * (kill every agent's process groups, their tasks interrupted).
 */
import { killProcessGroup } from "../workspace/process.js";
import { complete } from "./actions/complete.js";
import { interrupt } from "./actions/interrupt.js";
import { killAgent } from "./agent-liveness.js";
import { readStopRequest, stopRequestIsFor, type RunStatusFile, type StopRequest } from "./control.js";
import type { RunContext } from "./run-context.js";
import { sessions } from "./view.js";
import { completionPath, readAgentRecord, readCompletion } from "./wrapper.js";
import { durableUnlink } from "../workspace/durable.js";
import type { LockInfo } from "../workspace/lock.js";

export class StopState {
  mode: "drain" | "force" | null = null;
  /** Date.now() after which a drain leaves the agents running. */
  deadline = 0;

  /** `lock`: this orchestrator's, which the requests for it name. */
  constructor(private readonly lock: LockInfo) {}

  /**
   * Takes up a stop request for this orchestrator, if one came; a drain is logged and shown in the
   * status file. A request for an earlier holder of the lock (its `stop` read the lock before this
   * start took it) is not this one's to act on: its writer withdraws it.
   */
  async check(ctx: RunContext, status: RunStatusFile, log: (line: string) => void): Promise<void> {
    if (this.mode === "force") return;
    const req = await readStopRequest(ctx.ws);
    if (req && stopRequestIsFor(req, this.lock)) await this.take(req, status, log);
  }

  /**
   * Takes up `req`. The mode is set before the first await: a request taken from a signal handler
   * holds for every decision the loop makes after it, even in a pass already under way.
   */
  async take(
    req: Pick<StopRequest, "mode" | "timeout_s">,
    status: RunStatusFile,
    log: (line: string) => void,
  ): Promise<void> {
    if (this.mode === "force") return;
    if (req.mode === "force") {
      this.mode = "force";
      return;
    }
    if (this.mode) return;
    this.mode = "drain";
    this.deadline = Date.now() + req.timeout_s * 1000;
    log(`stop requested: draining (no new claims, waiting up to ${req.timeout_s}s for running agents)`);
    await status.write({ state: "draining" });
  }
}

/** stop --force: kill every agent's process groups, then record those tasks as interrupted. */
export async function forceStop(ctx: RunContext): Promise<void> {
  for (const s of sessions(ctx.dlog.state)) {
    // A wrapper we spawned is the leader of its own group, even before it wrote its pid record.
    const child = ctx.agents.get(s.agent_id)?.child;
    if (child?.pid && child.exitCode === null && child.signalCode === null)
      killProcessGroup(child.pid, "SIGKILL");
    const record = await readAgentRecord(ctx.ws, s.agent_id);
    if (record) killAgent(record, ctx.ws.root);
  }
  await new Promise((r) => setTimeout(r, 100));
  // A command group recorded after the first pass (the wrapper was starting): kill it too.
  for (const s of sessions(ctx.dlog.state)) {
    const record = await readAgentRecord(ctx.ws, s.agent_id);
    if (record) killAgent(record, ctx.ws.root);
  }
  for (const s of sessions(ctx.dlog.state)) {
    const rec = await readCompletion(ctx.ws, s.agent_id);
    if (rec && rec.exit_code === 0 && !rec.timed_out && rec.error === null) {
      await complete(ctx, s.agent_id, rec); // it finished just before the kill
      continue;
    }
    await interrupt(ctx, s.task_id, s.attempt, "stop --force killed the agent");
    ctx.agents.forget(s.agent_id);
    await durableUnlink(completionPath(ctx.ws, s.agent_id)).catch(() => {});
  }
}
