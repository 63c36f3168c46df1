/**
 * The replay of an uncommitted intent of a previous run (src/state/replay.ts). Each action module handles
 * its own decision types; every handler is idempotent: it first looks at the state (the commit may
 * be in the WAL already: a crash between commit and idempotency marker), then finishes the action
 * and commits, or rolls it back.
 */
import type { WalEntry } from "../../wal/entry.js";
import type { TaskSpec } from "../task-spec.js";

export type ReplayHandlers = Record<string, (entry: WalEntry) => Promise<void>>;

/** The inputs of a task decision's intent, each possibly absent (a foreign or damaged history). */
export function intentInputs(e: WalEntry): {
  task_id?: string;
  attempt?: number;
  agent_id?: string;
  task?: TaskSpec;
} {
  return e.inputs as { task_id?: string; attempt?: number; agent_id?: string; task?: TaskSpec };
}
