/**
 * `bernstein status`: task counts per state (the folders), agents and cost (the state: checkpoint +
 * WAL suffix), the WAL position, the newest checkpoint and its age. Read-only: it never takes the
 * lock, so it works beside a running orchestrator. An agent the state records counts as running
 * only when its wrapper process is alive, judged as `start` judges it (agent-liveness.ts).
 *
 * Integrity: the WAL is judged as `start` judges it before it runs: every run's chain (streamed,
 * as `wal verify` reads it) and the ends of the runs against their closed markers, checkpoints
 * and backup records (a rollback). A torn tail that `start` cuts is not a problem.
 */
import path from "node:path";
import { ExitCode } from "../errors/errors.js";
import { formatUsd } from "../ledger/cost-ledger.js";
import { findWalRollbacks, type RollbackKind } from "../dr/rollback.js";
import { listRuns, readTailPosition, type RunInfo } from "../wal/reader.js";
import { verifyRun } from "../wal/torn-tail.js";
import { TASK_STATES, type TaskState, type Workspace } from "../workspace/layout.js";
import { readLock } from "../workspace/lock.js";
import { inTurns } from "../workspace/small-files.js";
import { isOrchestratorHolder, otherHolder, readStatusFile } from "./control.js";
import { newestCheckpointInfo, type RejectedCheckpoint } from "./checkpointing.js";
import { MOVED, readBacklogStable, taskIdOfFileName } from "./backlog-folders.js";
import { sessions, totalCost } from "./view.js";
import { loadState } from "../checkpoint/load-state.js";
import { agentAlive, wrapperScan } from "./agent-liveness.js";
import { readAgentRecordSync, readCompletion } from "./wrapper.js";
import { collectMergeStatus, renderMergeStatus, type MergeStatus } from "./merge-status.js";

export interface StatusReport {
  /** Task files per folder; a file that does not parse is not a task and is left out. */
  tasks: Record<string, number>;
  /** Task files that do not parse (`start` leaves them in place and never schedules them). */
  malformed: { file: string; state: TaskState; error: string }[];
  /** Agents whose wrapper process is alive. */
  agents_running: number;
  /**
   * Agents the state records (sessions), alive or not. Of those not running, the next start
   * collects the outcome of the ones with a completion record (`finished`) and re-queues the rest.
   */
  agents_recorded: number;
  cost_usd: number;
  wal: { run_id: string | null; seq: number; entry_hash: string | null; runs: number; torn_tail: boolean };
  checkpoint: { id: string; created_at: string; age_s: number; wal_position: unknown } | null;
  /** Newer checkpoints than `checkpoint` that are not valid: the state does not come from them. */
  checkpoint_rejected: RejectedCheckpoint[];
  orchestrator: { running: boolean; pid: number | null; run_id: string | null; state: string | null };
  /** The live holder of the lock when it is not an orchestrator (a follower's `replicate follow`, a restore). */
  held_by: { pid: number; hostname: string; command: string | null } | null;
  /** `finished`: the wrapper wrote its completion record, which the orchestrator has not collected yet. */
  agents: { agent_id: string; task_id: string; attempt: number; running: boolean; finished: boolean }[];
  /** Worktree tasks: waiting to merge (and why), merged (with their merge commits). */
  merges: MergeStatus;
  /** What `start` would refuse on (exit 9); empty when the WAL status read is sound. */
  integrity: IntegrityProblem[];
  state_error?: string;
}

export interface IntegrityProblem {
  /** `chain_break`: an entry of the replayed WAL does not hash or link; else a rollback's kind. */
  kind: "chain_break" | RollbackKind;
  run_id: string;
  message: string;
}

export async function collectStatus(ws: Workspace): Promise<StatusReport> {
  const lock = await readLock(ws);
  const held = lock.state === "held" ? lock.info : null;
  const running = held !== null && isOrchestratorHolder(held);
  const agents: StatusReport["agents"] = [];
  let cost = 0;
  let stateError: string | undefined;
  let merges: MergeStatus = { waiting: [], merged: [] };
  let knownIds = new Set<string>();
  try {
    const { state } = await loadState(ws);
    knownIds = new Set(Object.keys(state.tasks));
    const wrappers = wrapperScan(ws.root);
    const live = sessions(state);
    const records = await inTurns(live, (s) => readAgentRecordSync(ws, s.agent_id));
    for (const [i, s] of live.entries()) {
      const record = records[i];
      // No token yet: the process table decides; without /proc, a running orchestrator vouches.
      const alive = record ? agentAlive(record, ws.root) : ((await wrappers())?.has(s.agent_id) ?? running);
      // A wrapper gone after its completion record is collected (done or failed by its exit
      // code), not re-queued: only one gone without it is lost.
      const finished = !alive && (await readCompletion(ws, s.agent_id)) !== null;
      agents.push({ ...s, running: alive, finished });
    }
    cost = totalCost(state);
    merges = await collectMergeStatus(ws, state);
  } catch (err) {
    stateError = (err as Error).message;
  }
  const { tasks, malformed } = await countTaskFiles(ws, knownIds);
  const runs = await listRuns(ws);
  const wal: StatusReport["wal"] = {
    run_id: null,
    seq: -1,
    entry_hash: null,
    runs: runs.length,
    torn_tail: false,
  };
  const last = runs[runs.length - 1];
  if (last) {
    const tail = await readTailPosition(last.file);
    Object.assign(wal, {
      run_id: last.run_id,
      seq: tail.last_seq,
      entry_hash: tail.last_hash,
      torn_tail: tail.torn,
    });
  }
  const sf = await readStatusFile(ws);
  const checkpoint = await newestCheckpointInfo(ws);
  return {
    tasks,
    malformed,
    agents_running: agents.filter((a) => a.running).length,
    agents_recorded: agents.length,
    cost_usd: Math.round(cost * 1e9) / 1e9,
    wal,
    checkpoint: checkpoint.checkpoint,
    checkpoint_rejected: checkpoint.rejected,
    orchestrator: {
      running,
      pid: running ? held.pid : null,
      // A restore to a point in time has no status file: the run is the newest in the WAL.
      run_id: sf?.run_id ?? last?.run_id ?? null,
      state: running ? (sf?.state ?? "running") : "stopped",
    },
    held_by:
      held && !running ? { pid: held.pid, hostname: held.hostname, command: held.command ?? null } : null,
    agents,
    merges,
    integrity: await integrityProblems(ws, runs),
    ...(stateError ? { state_error: stateError } : {}),
  };
}

/**
 * The task files per folder, as `start` sees them: a file named after a task the state knows is
 * that task (the WAL holds its spec, so `start` schedules it whatever the file says); any other
 * file counts only if it parses, as `start` adopts only those. The task parser (the YAML and
 * schema libraries) is loaded only for such files: new ones not adopted yet, malformed ones,
 * foreign names. The folders are read as of one moment (readBacklogStable): a running
 * orchestrator's moves never count a task twice or not at all. `start`'s summary counts with it
 * too, so the two never disagree (a task only a file holds, as a Python backup's done tasks).
 */
export async function countTaskFiles(
  ws: Workspace,
  knownIds: ReadonlySet<string>,
): Promise<Pick<StatusReport, "tasks" | "malformed">> {
  let parser: typeof import("./tasks.js") | undefined;
  return readBacklogStable(ws, TASK_STATES, async (listing) => {
    const tasks: Record<string, number> = {};
    const malformed: StatusReport["malformed"] = [];
    for (const { state, names } of listing) {
      const unknown = names.filter((n) => !knownIds.has(taskIdOfFileName(n)));
      tasks[state] = names.length - unknown.length;
      for (const name of unknown) {
        const file = path.join(ws.backlogDir(state), name);
        parser ??= await import("./tasks.js");
        try {
          await parser.readTaskFile(file, state);
          tasks[state]++;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "ENOENT") return MOVED;
          if (code !== "EISDIR") {
            const error =
              err instanceof parser.TaskParseError ? err.message : `${file}: ${(err as Error).message}`;
            malformed.push({ file, state, error });
          }
        }
      }
    }
    return { tasks, malformed };
  });
}

/** The exit code of a status report: 9 when `start` would refuse on what it found. */
export function statusExitCode(s: StatusReport): number {
  return s.integrity.length ? ExitCode.INTEGRITY : ExitCode.OK;
}

async function integrityProblems(ws: Workspace, runs: RunInfo[]): Promise<IntegrityProblem[]> {
  const problems: IntegrityProblem[] = [];
  for (const run of runs) {
    // A run a crash left open (or the one a running orchestrator appends to) may end in a torn
    // tail, which `start` cuts before it verifies.
    const { result, torn_tail } = await verifyRun(ws, run);
    const first = result.errors[0];
    if (first && !torn_tail) {
      problems.push({
        kind: "chain_break",
        run_id: run.run_id,
        message: `seq ${first.seq}, line ${first.line}: ${first.kind}: ${first.message}`,
      });
    }
  }
  for (const r of (await findWalRollbacks(ws)).rollbacks) {
    problems.push({ kind: r.kind, run_id: r.run_id, message: r.message });
  }
  return problems;
}

/** Task counts as `status` shows them: the four busy states always, the others when not empty. */
export function renderTaskCounts(tasks: Record<string, number>): string {
  return Object.entries(tasks)
    .filter(([k, v]) => v > 0 || ["open", "claimed", "done", "failed"].includes(k))
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

export function renderStatus(s: StatusReport, line: (l: string) => void): void {
  for (const p of s.integrity)
    line(`integrity: ${p.kind}: ${p.run_id ? `run ${p.run_id}: ` : ""}${p.message}`);
  if (s.integrity.length)
    line(
      "integrity: `start` refuses this WAL (exit 9); inspect with `bernstein wal verify`, restore a good copy with `bernstein dr restore`",
    );
  line(`tasks: ${renderTaskCounts(s.tasks)}`);
  if (s.malformed.length)
    line(
      `malformed task files: ${s.malformed.length} (not counted above; never scheduled; \`bernstein doctor\` names them)`,
    );
  const gone = s.agents_recorded - s.agents_running;
  const finished = s.agents.filter((a) => !a.running && a.finished).length;
  const who = s.orchestrator.running ? "the orchestrator" : "the next start";
  const fates = [
    ...(finished ? [`${finished} finished: ${who} collects their outcome`] : []),
    ...(gone > finished ? [`${gone - finished} gone without an outcome: ${who} re-queues them`] : []),
  ];
  line(
    `agents running: ${s.agents_running}` +
      (gone > 0 ? `; recorded, not running: ${gone} (${fates.join("; ")})` : ""),
  );
  line(`cost: ${formatUsd(s.cost_usd)}`);
  line(
    s.wal.run_id
      ? `wal: run ${s.wal.run_id} at seq ${s.wal.seq} (${s.wal.runs} run(s))${s.wal.torn_tail ? (s.integrity.length ? ", torn tail" : s.orchestrator.running ? ", a line being written" : ", torn tail (repaired at next start)") : ""}`
      : "wal: no runs yet",
  );
  line(
    s.checkpoint
      ? `checkpoint: ${s.checkpoint.id}, ${Math.round(s.checkpoint.age_s)}s old`
      : s.checkpoint_rejected.length
        ? "checkpoint: none valid"
        : "checkpoint: none",
  );
  for (const r of s.checkpoint_rejected) line(`checkpoint: ${r.message}`);
  line(
    s.orchestrator.running
      ? `orchestrator: running, pid ${s.orchestrator.pid}, run ${s.orchestrator.run_id}`
      : `orchestrator: not running${s.held_by ? `; the workspace is held by ${otherHolder(s.held_by)}` : ""}`,
  );
  renderMergeStatus(s.merges, line);
  if (s.state_error) line(`state: could not be loaded: ${s.state_error}`);
}
