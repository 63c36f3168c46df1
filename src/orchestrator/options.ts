/** What `start` may tune about a run of the orchestrator, and the warnings it reports. */
import type { WalPosition } from "../wal/entry.js";
import type { WalWriter } from "../wal/writer.js";
import type { MergeStrategy } from "./git/merge.js";
import { DEFAULT_IDENTITY, type GitIdentity } from "./git/run-git.js";

/** How worktree tasks run and merge (docs/orchestrator.md, "Worktrees and merges"). */
export interface WorktreeOptions {
  /** Every task runs in its own worktree (`worktrees: true`); else only tasks added with `--worktree`. */
  all: boolean;
  /** What turned `all` on, as a refusal names it: `--worktrees`, or the file's `worktrees: true`. */
  allSetBy?: string;
  strategy: MergeStrategy;
  /** A conflicting merge: the task back to the backlog (a new attempt from the new target), or failed and held. */
  onConflict: "requeue" | "hold";
  /** The branch merged into; default the branch checked out in the repository's main worktree. */
  targetBranch?: string;
  /** Author and committer of the orchestrator's own commits (leftovers, merges). */
  identity: GitIdentity;
  /** Keep a task's branch after its merge. */
  keepBranches: boolean;
}

export const DEFAULT_WORKTREE_OPTIONS: WorktreeOptions = {
  all: false,
  strategy: "merge",
  onConflict: "requeue",
  identity: DEFAULT_IDENTITY,
  keepBranches: false,
};

export interface OrchestratorOptions {
  maxAgents: number;
  untilIdle: boolean;
  /** Checkpoint after this many commits (0: never by count). */
  checkpointEvery: number;
  /** Checkpoint after this many seconds (0: never by time). */
  checkpointIntervalS: number;
  /** First retry delay; doubles per failure, capped at 60 s. */
  retryBackoffMs: number;
  /** Longest sleep between scheduling passes (completions and stop requests also wake the loop). */
  pollMs: number;
  /** How long an agent without a pid record may stay unaccounted for before it counts as lost. */
  lostAgentGraceMs: number;
  /** Intents of earlier runs older than this are stale: reported, not replayed (default 1 hour). */
  replayStaleAfterMs?: number;
  worktrees: WorktreeOptions;
  /** Audit key file (else the default resolution). */
  auditKeyFile?: string;
  /**
   * The replication leader (`start --replication-listen`): its commit gate holds each append until
   * the acknowledgement policy is met (a rejection is a REPLICATION error), and it serves the run.
   * After a clean stop, `handOver` waits (bounded) for the followers in contact to hold the run's
   * last entry, before the lock is released: `stop` returns once they know the leader stopped.
   */
  replication?: {
    commitGate: (pos: WalPosition) => Promise<void>;
    attachWriter: (writer: WalWriter) => unknown;
    handOver: () => Promise<unknown>;
  };
  /**
   * The WAL archiver (`start --archive-to`), hosted by the run: started once the loop can answer
   * a backup's pause, finished after the WAL is closed and before the lock is released (so `stop`
   * returns once the store holds the run's last entry). With `--sync` its commit gate holds each
   * append until the store holds it.
   */
  archive?: HostedArchiver;
  log?: (line: string) => void;
  /**
   * A warning. Those with a `group` come in bursts (one per task or intent: thousands after a
   * restore), so the caller may summarize a group's warnings between two `flushWarnings` calls.
   */
  warn?: (line: string, group?: WarningGroup) => void;
  /** Called after recovery's and each scheduling pass's warnings (the end of a burst). */
  flushWarnings?: () => void;
}

export interface HostedArchiver {
  commitGate?: (pos: WalPosition) => Promise<void>;
  start(): void;
  finish(): Promise<unknown>;
  /** The run failed: stop shipping without the final cycle. */
  stop(): void;
}

/**
 * The WAL's commit gate: replication's ack policy, then the archive's `--sync`, each when
 * configured. `whileReplicationWaits` wraps the wait for acknowledgements (the pause requests of
 * the leader's own base snapshot are answered meanwhile: SnapshotResponder.whileWaiting).
 */
export function commitGateOf(
  o: Pick<OrchestratorOptions, "replication" | "archive">,
  whileReplicationWaits?: (waiting: Promise<void>) => Promise<void>,
) {
  const repl = o.replication?.commitGate;
  const replGate =
    repl && whileReplicationWaits ? (pos: WalPosition) => whileReplicationWaits(repl(pos)) : repl;
  const gates = [replGate, o.archive?.commitGate].filter((g) => g !== undefined);
  if (gates.length <= 1) return gates[0];
  // Both at once: a decision is acted on only when the followers and the store hold it.
  return async (pos: WalPosition): Promise<void> => {
    await Promise.all(gates.map((g) => g(pos)));
  };
}

/** Kinds of warnings that come one per task, agent or intent. */
export type WarningGroup =
  | "stale intent"
  | "task file from the WAL"
  | "replay failure"
  | "idempotency store"
  | "task in two folders"
  | "malformed task file"
  | "missing task file"
  | "reused task id"
  | "finished task's file in open"
  | "failed task"
  | "lost agent"
  | "unplaced completion"
  | "blocked task";

export const DEFAULT_OPTIONS: OrchestratorOptions = {
  maxAgents: 4,
  untilIdle: false,
  checkpointEvery: 100,
  checkpointIntervalS: 60,
  retryBackoffMs: 1000,
  pollMs: 250,
  lostAgentGraceMs: 15_000,
  worktrees: DEFAULT_WORKTREE_OPTIONS,
};
