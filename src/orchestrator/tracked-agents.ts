/**
 * The agent sessions this process watches: since when (the grace period of a wrapper without a pid
 * record), the attempt's timeout (the backstop kill), and the wrapper's child process and exit
 * code when this process spawned it.
 */
import type { ChildProcess } from "node:child_process";
import type { SessionView } from "./view.js";

export interface TrackedAgent {
  agentId: string;
  taskId: string;
  attempt: number;
  /** Set when this process spawned the wrapper. */
  child?: ChildProcess;
  childExit?: number | null;
  /** ms (Date.now) when we started watching it. */
  since: number;
  timeoutS: number;
}

export class TrackedAgents {
  private readonly byAgent = new Map<string, TrackedAgent>();

  get(agentId: string): TrackedAgent | undefined {
    return this.byAgent.get(agentId);
  }

  /** A session of an earlier run (or one found untracked): watched from now on. */
  watch(s: SessionView, timeoutS: number, now = Date.now()): TrackedAgent {
    const tr: TrackedAgent = {
      agentId: s.agent_id,
      taskId: s.task_id,
      attempt: s.attempt,
      since: now,
      timeoutS,
    };
    this.byAgent.set(s.agent_id, tr);
    return tr;
  }

  /** A wrapper this process spawned: its exit is recorded and wakes the loop. */
  spawned(s: SessionView, child: ChildProcess, timeoutS: number, wake: () => void): void {
    const tr: TrackedAgent = {
      agentId: s.agent_id,
      taskId: s.task_id,
      attempt: s.attempt,
      child,
      since: Date.now(),
      timeoutS,
    };
    child.on("exit", (code) => {
      tr.childExit = code;
      wake();
    });
    child.on("error", () => {
      tr.childExit = -1;
      wake();
    });
    child.unref();
    this.byAgent.set(s.agent_id, tr);
  }

  forget(agentId: string): void {
    this.byAgent.delete(agentId);
  }
}
