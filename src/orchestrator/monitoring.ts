/**
 * Watching the running agents between decisions: completion records are turned into outcomes, and
 * a session whose wrapper is gone without one is re-queued (the command may have run partly).
 */
import { durableUnlink } from "../workspace/durable.js";
import { complete } from "./actions/complete.js";
import { interrupt } from "./actions/interrupt.js";
import { agentAlive, killAgent, wrapperScan } from "./agent-liveness.js";
import type { RunContext } from "./run-context.js";
import type { TrackedAgent } from "./tracked-agents.js";
import { sessions } from "./view.js";
import {
  EXIT_DUPLICATE,
  completionPath,
  listCompletions,
  readAgentRecord,
  readCompletion,
  type AgentRecord,
} from "./wrapper.js";

/**
 * How often the running agents are checked however long --poll is: a lost wrapper that is no
 * child of this process (re-attached after a restart) is found only by looking.
 */
export const LIVENESS_CHECK_MS = 1000;

/** How long past its timeout an attempt's wrapper may live before the orchestrator kills it. */
const TERMINAL_GRACE_S = 60;

/** The outcomes of the sessions that have a completion record; returns how many. */
export async function collectCompletions(ctx: RunContext): Promise<number> {
  let n = 0;
  const waiting = new Set(await listCompletions(ctx.ws));
  for (const s of sessions(ctx.dlog.state)) {
    if (!waiting.has(s.agent_id)) continue;
    const rec = await readCompletion(ctx.ws, s.agent_id);
    if (!rec) continue;
    await complete(ctx, s.agent_id, rec);
    n++;
  }
  return n;
}

/**
 * Completion records of agents the state no longer has: handled before a crash (said nothing of:
 * the WAL holds the outcome), or of an attempt the WAL never spawned (a workspace restored from a
 * backup taken before it): removed uncounted, and said, since that outcome is lost here.
 */
export async function removeStaleCompletions(ctx: RunContext): Promise<void> {
  const live = new Set(sessions(ctx.dlog.state).map((s) => s.agent_id));
  for (const id of await listCompletions(ctx.ws)) {
    if (live.has(id)) continue;
    await durableUnlink(completionPath(ctx.ws, id)).catch(() => {});
    const hash = id.lastIndexOf("#");
    const task = ctx.dlog.state.tasks[id.slice(0, hash)];
    if (hash < 0 || !task || Number(id.slice(hash + 1)) > task.attempt)
      ctx.warn(
        `completion record of agent ${id} removed uncounted: the WAL holds no spawn of it (a workspace restored from a backup taken before its spawn); its outcome and cost are not in this history`,
        "unplaced completion",
      );
  }
}

/** Sessions whose wrapper is gone without a completion record: re-queued (the command may have run partly). */
export async function checkAgents(ctx: RunContext): Promise<void> {
  const now = Date.now();
  const wrappers = wrapperScan(ctx.ws.root);
  for (const s of sessions(ctx.dlog.state)) {
    const tr = ctx.agents.get(s.agent_id) ?? ctx.agents.watch(s, 0, now);
    const record = await readAgentRecord(ctx.ws, s.agent_id);
    const gone = record
      ? wrapperGone(record, tr, now, ctx.ws.root)
      : await neverStarted(tr, now, wrappers, ctx.opts.lostAgentGraceMs);
    if (!gone) continue;
    const rec = await readCompletion(ctx.ws, s.agent_id);
    if (rec) {
      await complete(ctx, s.agent_id, rec);
      continue;
    }
    // The wrapper may be gone while its command runs on (the wrapper alone was killed): the next
    // attempt must not run beside it.
    const killed = record ? killAgent(record, ctx.ws.root) : null;
    const what = killed ? `; its command's process group ${killed} killed` : "";
    ctx.agents.forget(s.agent_id);
    ctx.recovery.lost_agents_requeued++;
    ctx.warn(
      `agent ${s.agent_id} is gone without a completion record${what}; task ${s.task_id} re-queued`,
      "lost agent",
    );
    await interrupt(ctx, s.task_id, s.attempt, `agent lost (no completion record)${what}`);
  }
}

/**
 * No run-once token: not started yet, died before creating it, or a session of a history without
 * tokens. Gone when our child exited, or (a wrapper an earlier orchestrator spawned) when the
 * process table has no wrapper for it; ours, or without /proc: after a grace period.
 */
async function neverStarted(
  tr: TrackedAgent,
  now: number,
  wrappers: () => Promise<Set<string> | null>,
  graceMs: number,
): Promise<boolean> {
  const ourChildDied =
    tr.child !== undefined && tr.childExit !== undefined && tr.childExit !== EXIT_DUPLICATE;
  // The process table says whether an earlier orchestrator's wrapper is still starting (it existed
  // before its spawn was committed).
  const inTable = tr.child === undefined ? await wrappers() : null;
  return ourChildDied || (inTable ? !inTable.has(tr.agentId) : now - tr.since > graceMs);
}

/** The wrapper of a token is gone, or past its timeout and then killed. */
function wrapperGone(record: AgentRecord, tr: TrackedAgent, now: number, sddRoot: string): boolean {
  if (!agentAlive(record, sddRoot)) return true;
  if (tr.timeoutS <= 0) return false;
  const started = Date.parse(record.started_at);
  if (!(now - started > (tr.timeoutS + TERMINAL_GRACE_S) * 1000)) return false;
  // The wrapper enforces the timeout; this is the backstop if it could not.
  killAgent(record, sddRoot);
  return true;
}
