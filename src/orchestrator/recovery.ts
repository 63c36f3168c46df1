/**
 * `start`'s recovery, before the first new decision: refuse a rolled-back or broken WAL, repair
 * torn tails, load the state (checkpoint + WAL), write the files of committed decisions that are
 * missing, replay the uncommitted intents of previous runs, put the folders in line with the
 * state, and account for the agents of previous runs (collected, re-attached or re-queued).
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { AuditLog } from "../audit/log.js";
import { AuditKeyMissingError, loadAuditKeyForWriting } from "../audit/key.js";
import { CostRowsOncePerAgent } from "../ledger/cost-ledger.js";
import { listRuns, verifyWal } from "../wal/reader.js";
import { readClosedMarker } from "../wal/recovery.js";
import { findWalRollbacks } from "../dr/rollback.js";
import { SnapshotResponder, writerPositions } from "../dr/snapshot.js";
import { replayWal, type ReplaySummary } from "../state/replay.js";
import { WalWriter, newRunId } from "../wal/writer.js";
import { durableMkdir, durableUnlink } from "../workspace/durable.js";
import type { TaskState, Workspace } from "../workspace/layout.js";
import type { LockInfo } from "../workspace/lock.js";
import { adoptNewTasks } from "./actions/adopt.js";
import { interrupt } from "./actions/interrupt.js";
import { loadAgentsConfig } from "./agents.js";
import { BacklogIntake } from "./backlog-intake.js";
import { clearStaleStopRequest, RunStatusFile } from "./control.js";
import { DecisionLog } from "../state/decisions.js";
import { materializeFromWal, type MaterializeResult } from "./materialize.js";
import { checkAgents, collectCompletions, removeStaleCompletions } from "./monitoring.js";
import { commitGateOf, type OrchestratorOptions, type WarningGroup } from "./options.js";
import { emptyRecoverySummary } from "./recovery-summary.js";
import { replayHandlers } from "./replay-handlers.js";
import { sweepMergedWorktrees } from "./worktree-tasks.js";
import { RetryBackoff } from "./retry-backoff.js";
import type { RunContext } from "./run-context.js";
import { RunOutcome } from "./run-outcome.js";
import { schedulable } from "./scheduler.js";
import { TaskFiles } from "./task-files.js";
import { readTaskFile, renderTask, scanBacklog } from "./tasks.js";
import type { TaskSpec } from "./task-spec.js";
import { TrackedAgents } from "./tracked-agents.js";
import { allTasks, sessionOfTask, sessions, taskView, type TaskView } from "./view.js";
import { loadState } from "../checkpoint/load-state.js";
import { readCompletion } from "./wrapper.js";
import { shown } from "../workspace/shown-path.js";
import { findingWording } from "../dr/manifest.js";

type Warn = (line: string, group?: WarningGroup) => void;

/** The loop's hooks into the decisions recovery already makes. */
export interface RecoveryHooks {
  /** Ends the loop's pause (a wrapper spawned by a replayed intent exits). */
  wake: () => void;
  /** After every commit (the checkpoint cadence). */
  onCommit: () => void;
}

/**
 * Recovers the workspace (the caller holds its lock, `lock`); on failure the new run's WAL is
 * closed again.
 */
export async function recover(
  ws: Workspace,
  opts: OrchestratorOptions,
  hooks: RecoveryHooks,
  lock: LockInfo,
): Promise<{ ctx: RunContext; status: RunStatusFile }> {
  const warn: Warn = (line, group) => opts.warn?.(line, group);
  await refuseRolledBackWal(ws);
  for (const dir of [
    ws.completedDir,
    ws.p("runtime", "agents"),
    ws.p("logs", "agents"),
    ws.p("runtime", "signals"),
    ws.p("runtime", "snapshot"),
  ])
    await durableMkdir(dir);
  // A `stop` that found this start's lock is honoured, however long the recovery takes.
  await clearStaleStopRequest(ws, lock);
  const agentsCfg = await loadAgentsConfig(ws);
  const chains = await verifyChains(ws, warn);
  const loaded = await loadState(ws);
  // A newer checkpoint passed over: the WAL makes the fallback safe, but it is never silent.
  for (const w of loaded.warnings) warn(w);
  // A promoted follower or a partial restore may lack task files and ledger rows of committed
  // decisions; the WAL holds them. Folders are moved by reconcileFolders after the replay.
  reportMaterialized(warn, await materializeFromWal(ws, loaded.state, { moveMisplaced: false }));
  const runId = newRunId();
  // The summary exists before anything can count into it: replay handlers (an orphaned claim)
  // and the backlog scan (a malformed file) do, and both run before the replay returns.
  const recovery = emptyRecoverySummary(runId, chains);
  // Its refusals (a bad --key-file) come before the new run's WAL exists: they leave no run.
  const audit = await openAuditLog(ws, opts, warn);
  const snapshots = new SnapshotResponder(ws);
  const wal: WalWriter = await WalWriter.open(ws, runId, {
    commitGate: commitGateOf(opts, (waiting) =>
      snapshots.whileWaiting(waiting, () => writerPositions(wal.durablePosition)),
    ),
  });
  try {
    opts.replication?.attachWriter(wal);
    const dlog = new DecisionLog({ ws, wal, audit, state: loaded.state, onCommit: () => hooks.onCommit() });
    const ctx: RunContext = {
      ws,
      opts,
      dlog,
      agentsCfg,
      files: new TaskFiles(ws, warn),
      intake: new BacklogIntake(ws, warn, recovery.malformed),
      agents: new TrackedAgents(),
      backoff: new RetryBackoff(opts.retryBackoffMs),
      costRows: new CostRowsOncePerAgent(ws),
      outcome: new RunOutcome(),
      recovery,
      mergeWaits: new Map(),
      warn,
      wake: () => hooks.wake(),
    };
    const status = new RunStatusFile(ws, {
      pid: process.pid,
      run_id: runId,
      state: "recovering",
      max_agents: opts.maxAgents,
    });
    await status.write();
    await recoverRun(ctx);
    await status.write({ state: "running", replay: recovery.replay });
    return { ctx, status };
  } catch (err) {
    await wal.close().catch(() => {});
    // A run without a single entry is no run: it would only show as the newest, empty.
    if (!wal.durablePosition) await durableUnlink(ws.walFile(runId)).catch(() => {});
    throw err;
  }
}

/** From `orchestrator_started` on: every step is a decision of the new run, or reads the state. */
async function recoverRun(ctx: RunContext): Promise<void> {
  const rec = ctx.recovery;
  await ctx.dlog.info("orchestrator_started");
  await indexBacklogFiles(ctx);
  ctx.outcome.blockedWhenStarting(
    schedulable(ctx.dlog.state, ctx.files, ctx.backoff, ctx.opts.maxAgents).blocked,
  );
  const replay = await replayWal(ctx.ws, {
    currentRunId: ctx.dlog.runId,
    writer: ctx.dlog.wal,
    staleAfterMs: ctx.opts.replayStaleAfterMs,
    handlers: replayHandlers(ctx),
  });
  reportReplay(ctx.warn, replay);
  rec.replay = replay;
  rec.folders_repaired = await reconcileFolders(ctx);
  await sweepMergedWorktrees(ctx);
  await reattachAgents(ctx);
  // Claims that never got a spawn intent: nothing ran, put them back.
  for (const t of allTasks(ctx.dlog.state)) {
    if (t.state === "claimed" && !sessionOfTask(ctx.dlog.state, t.id)) {
      await interrupt(ctx, t.id, t.attempt, "orphaned claim (no agent was spawned)");
      rec.orphaned_claims_requeued++;
    }
  }
  await removeStaleCompletions(ctx);
  rec.adopted = await adoptNewTasks(ctx);
}

/** Repairs torn tails of runs a crash left open, then verifies every chain; a break refuses. */
async function verifyChains(ws: Workspace, warn: Warn): Promise<{ verified: number; repaired: number }> {
  let repaired = 0;
  const runs = await listRuns(ws);
  for (const run of runs) {
    if (await readClosedMarker(ws, run.run_id)) continue;
    // Opening the writer cuts a torn tail back to the last valid entry (kept in a sidecar).
    const w = await WalWriter.open(ws, run.run_id);
    if (w.repair) {
      repaired++;
      warn(
        `wal ${run.run_id}: repaired a torn tail (${w.repair.cut_bytes} bytes after seq ${w.repair.kept_last_seq} moved to ${shown(w.repair.sidecar)})`,
      );
    }
    await w.close();
  }
  for (const run of runs) {
    const r = await verifyWal(run.file, run.run_id);
    if (!r.ok) {
      const e = r.errors[0];
      throw new UserError(
        `refusing to start: WAL chain broken in run ${run.run_id} at seq ${e?.seq ?? "?"} (line ${e?.line ?? "?"}: ${e?.message ?? "unknown"}); ` +
          `inspect with \`bernstein wal verify --run ${run.run_id}\` and restore a good copy with \`bernstein dr restore\``,
        ExitCode.INTEGRITY,
        { run_id: run.run_id, seq: e?.seq, line: e?.line, kind: e?.kind },
      );
    }
  }
  return { verified: runs.length, repaired };
}

/**
 * A WAL that ends before a position its closed marker, a checkpoint or a backup record names was
 * rolled back: decisions acted on are gone, and running on would act on them again. Refuses
 * before anything is written (the torn-tail repair only cuts bytes after the newest valid entry,
 * which is what is compared here).
 */
async function refuseRolledBackWal(ws: Workspace): Promise<void> {
  const { rollbacks } = await findWalRollbacks(ws);
  if (!rollbacks.length) return;
  const first = rollbacks[0];
  const more = rollbacks.length > 1 ? ` (and ${rollbacks.length - 1} more)` : "";
  // A corrupt marker's finding already says what to do (restore, or move the marker aside).
  const restore =
    first.kind === "corrupt_marker" ? "" : " and restore a good copy with `bernstein dr restore`";
  throw new UserError(
    `refusing to start: WAL of run ${first.run_id} ${findingWording(first.kind)}: ${first.message}${more}; ` +
      `inspect with \`bernstein wal verify --run ${first.run_id}\`${restore}`,
    ExitCode.INTEGRITY,
    { rollbacks },
  );
}

/**
 * The audit log for task events. Without the workspace's key (and a log that already has
 * entries, so no new key may be minted), or with a key that did not sign the log, the run goes on
 * without task events, and says why. A key it cannot use (a mode-644 --key-file) refuses the start.
 */
async function openAuditLog(ws: Workspace, opts: OrchestratorOptions, warn: Warn): Promise<AuditLog | null> {
  try {
    const key = await loadAuditKeyForWriting(ws.auditDir, {
      keyFile: opts.auditKeyFile,
      keyFileFlag: "--key-file",
    });
    return await AuditLog.open(ws, key);
  } catch (err) {
    if (!(err instanceof AuditKeyMissingError)) throw err;
    warn(`task audit events are skipped: ${err.message}`);
    return null;
  }
}

/** Where each task's file is (any folder). A task found in two folders is reported. */
async function indexBacklogFiles(ctx: RunContext): Promise<void> {
  const scan = await scanBacklog(ctx.ws);
  for (const t of scan.tasks) {
    const st = taskView(ctx.dlog.state, t.spec.id)?.state;
    // With duplicates, prefer the copy in the folder the state names.
    if (!ctx.files.has(t.spec.id) || t.state === st) ctx.files.set(t.spec.id, t.file);
  }
  for (const [id, files] of scan.duplicates) {
    ctx.warn(
      `task ${id} is in more than one folder: ${files.map((f) => f.file).join(", ")}`,
      "task in two folders",
    );
  }
  ctx.intake.reportMalformed(scan.malformed.map((m) => m.error));
}

function reportMaterialized(warn: Warn, r: MaterializeResult): void {
  if (r.written.length || r.ledger_rows) {
    const ids = r.written.map((w) => w.id);
    const listed = ids.length > 20 ? `${ids.slice(0, 20).join(", ")}, ...` : ids.join(", ");
    warn(
      `wrote ${r.written.length} task file(s) and ${r.ledger_rows} ledger row(s) from the WAL (committed decisions whose files were missing: a promoted follower or a partial restore)${ids.length ? `: ${listed}` : ""}`,
    );
  }
  for (const p of r.problems) warn(p, "task file from the WAL");
}

function reportReplay(warn: Warn, replay: ReplaySummary): void {
  for (const w of replay.warnings) warn(w, "idempotency store");
  for (const f of replay.failures)
    warn(`replay of ${f.decision_type} (run ${f.run_id}, seq ${f.seq}) failed: ${f.error}`, "replay failure");
  if (replay.stale) {
    const listed = replay.stale_entries.length;
    warn(
      `${replay.stale} stale intent(s) not replayed (older than the staleness window)` +
        (listed < replay.stale ? `; the replay lists the first ${listed}` : ""),
    );
  }
  for (const e of replay.stale_entries)
    warn(`stale intent: run ${e.run_id} seq ${e.seq} ${e.decision_type}`, "stale intent");
}

/** The folder is the state: move any file the state disagrees with (a crash between rename and commit). */
async function reconcileFolders(ctx: RunContext): Promise<number> {
  // Tasks whose task_created the replay just committed (their intent arrived without the file).
  const late = await materializeFromWal(ctx.ws, ctx.dlog.state, { moveMisplaced: false, ledger: false });
  for (const w of late.written) ctx.files.set(w.id, w.file);
  reportMaterialized(ctx.warn, late);
  let moved = 0;
  for (const t of allTasks(ctx.dlog.state)) {
    const folder = ctx.files.folderOf(t.id) as TaskState | undefined;
    if (folder === undefined || folder === t.state || folder === "closed") continue;
    if (folder === "open" && (t.state === "done" || t.state === "failed") && (await leftInOpen(ctx, t)))
      continue;
    await ctx.files.move(t.id, t.state);
    moved++;
  }
  return moved;
}

/**
 * A file in `open/` of a task the WAL has finished was put there by hand: a task added anew
 * under a finished task's id (its file deleted first), or a failed task's file moved back to be
 * retried. Neither runs — the WAL decides a task's state, and a finished task is never claimed
 * again — so neither may be filed away without a word. A different task is left where it is;
 * the task's own file goes back to its state's folder. True when the file is left in place.
 */
async function leftInOpen(ctx: RunContext, t: TaskView): Promise<boolean> {
  const file = ctx.files.get(t.id)!;
  let spec: TaskSpec;
  try {
    spec = await readTaskFile(file, "open");
  } catch {
    return false; // gone or unreadable since the scan: the move below says so
  }
  const rerun = `to run it, add it as a new task under another id (bernstein task add ... --id ID)`;
  if (renderTask(spec) !== renderTask(t.spec)) {
    ctx.warn(
      `task file ${shown(file)} holds another task under id ${t.id}, which the WAL records as ${t.state}: left in place, not run; ${rerun}`,
      "reused task id",
    );
    return true;
  }
  ctx.warn(
    `task file ${shown(file)} was moved to open/, but task ${t.id} is ${t.state} in the WAL and is not run again: moved back to ${t.state}/; ${rerun}`,
    "finished task's file in open",
  );
  return false;
}

/** Agents of the previous run: collect what finished while we were down, re-attach the rest. */
async function reattachAgents(ctx: RunContext): Promise<void> {
  const rec = ctx.recovery;
  for (const s of sessions(ctx.dlog.state)) {
    const spec = taskView(ctx.dlog.state, s.task_id)?.spec;
    ctx.agents.watch(s, spec?.timeout_s ?? 0);
    if (await readCompletion(ctx.ws, s.agent_id)) rec.completions_collected++;
  }
  await collectCompletions(ctx);
  // Agents whose wrapper is provably gone are re-queued now, not after a grace period.
  await checkAgents(ctx);
  rec.reattached = sessions(ctx.dlog.state).length;
}
