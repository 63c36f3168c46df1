/**
 * The orchestrator: recovers the workspace's state, then runs the backlog with agents as real,
 * detached processes, every decision through the WAL (src/state/decisions.ts). See docs/orchestrator.md.
 *
 * One process per workspace (the workspace lock). Decisions are made one at a time by this loop,
 * so with `--max-agents 1` the WAL of two runs of the same backlog is the same decision for decision.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, watch, type FSWatcher } from "node:fs";
import { stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { AuditLog } from "../audit/log.js";
import { resolveOptions } from "../json/object.js";
import { AuditKeyMissingError, loadAuditKeyForWriting } from "../audit/key.js";
import { appendCostRow, ledgerAgentIds, usageOf } from "../ledger/cost-ledger.js";
import type { JsonObject, WalEntry, WalPosition } from "../wal/entry.js";
import { listRuns, verifyWal } from "../wal/reader.js";
import { readClosedMarker } from "../wal/recovery.js";
import { findWalRollbacks } from "../dr/rollback.js";
import { emptyReplaySummary, replayWal, type ReplaySummary } from "../state/replay.js";
import { WalWriter, newRunId } from "../wal/writer.js";
import { durableMkdir, durableUnlink } from "../workspace/durable.js";
import type { TaskState, Workspace } from "../workspace/layout.js";
import { acquireLock, type WorkspaceLock } from "../workspace/lock.js";
import { loadAgentsConfig, resolveInvocation, type AgentsConfig } from "./agents.js";
import {
  clearStopRequest,
  readStopRequest,
  writeStatusFile,
  type OrchestratorStatusFile,
} from "./control.js";
import { checkpointState } from "./checkpointing.js";
import { DecisionLog } from "../state/decisions.js";
import { materializeFromWal, type MaterializeResult } from "./materialize.js";
import { agentAlive, wrapperScan } from "./agent-liveness.js";
import { listStateFolder, moveTaskFile, readTaskFile, scanBacklog } from "./tasks.js";
import { type TaskSpec } from "./task-spec.js";
import { SnapshotResponder } from "../dr/snapshot.js";
import { allTasks, sessions, taskView, type TaskView } from "./view.js";
import { loadState } from "../checkpoint/load-state.js";
import {
  EXIT_DUPLICATE,
  WRAPPER_MAIN,
  agentIdOf,
  agentLogPath,
  agentRecordPath,
  completionPath,
  listCompletions,
  readAgentRecord,
  readCompletion,
  type AgentRecord,
  type CompletionRecord,
  type WrapperJob,
} from "./wrapper.js";

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
  /** Audit key file (else the default resolution). */
  auditKeyFile?: string;
  /**
   * The replication leader (`start --replication-listen`): its commit gate holds each append until
   * the acknowledgement policy is met (a rejection is a REPLICATION error), and it serves the run.
   */
  replication?: {
    commitGate: (pos: WalPosition) => Promise<void>;
    attachWriter: (writer: WalWriter) => unknown;
  };
  log?: (line: string) => void;
  /**
   * A warning. Those with a `group` come in bursts (one per task or intent: thousands after a
   * restore), so the caller may summarize a group's warnings between two `flushWarnings` calls.
   */
  warn?: (line: string, group?: WarningGroup) => void;
  /** Called after recovery's and each scheduling pass's warnings (the end of a burst). */
  flushWarnings?: () => void;
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
  | "failed task"
  | "lost agent"
  | "blocked task";

export const DEFAULT_OPTIONS: OrchestratorOptions = {
  maxAgents: 4,
  untilIdle: false,
  checkpointEvery: 100,
  checkpointIntervalS: 60,
  retryBackoffMs: 1000,
  pollMs: 250,
  lostAgentGraceMs: 15_000,
};

export interface RecoverySummary {
  run_id: string;
  replay: ReplaySummary;
  /** Runs whose chain was verified before loading. */
  runs_verified: number;
  /** Torn tails cut back by the writer (never a break). */
  torn_tails_repaired: number;
  reattached: number;
  completions_collected: number;
  orphaned_claims_requeued: number;
  lost_agents_requeued: number;
  adopted: number;
  folders_repaired: number;
  malformed: string[];
}

export interface RunResult {
  run_id: string;
  reason: "idle" | "stopped" | "forced";
  /** 1 (with --until-idle) only for what this run did: see `this_run`. */
  exit_code: number;
  /** Tasks per state, all runs. */
  counts: Record<string, number>;
  /** Every task that can never run, and every failed one (all runs). */
  blocked: string[];
  failed: string[];
  /**
   * What this invocation did: tasks completed, tasks that failed terminally, tasks that became
   * unable to run (not blocked when it began: a new task, or one whose dependency failed now).
   */
  this_run: { done: number; failed: string[]; blocked: string[] };
  decisions: number;
}

interface Tracked {
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

const TERMINAL_GRACE_S = 60;

export class Orchestrator {
  private readonly opts: OrchestratorOptions;
  private dlog!: DecisionLog;
  private lock!: WorkspaceLock;
  private agentsCfg!: AgentsConfig;
  private readonly tracked = new Map<string, Tracked>();
  private readonly fileOf = new Map<string, string>();
  private readonly notBefore = new Map<string, number>();
  private readonly malformedReported = new Set<string>();
  private readonly rejected = new Map<string, number>();
  private watchers: FSWatcher[] = [];
  private wakeResolve: (() => void) | null = null;
  private stopping: "drain" | "force" | null = null;
  private stopDeadline = 0;
  private commitsSinceCheckpoint = 0;
  private lastCheckpointAt = Date.now();
  private statusFile!: OrchestratorStatusFile;
  private ledgerAgentIds: Set<string> | null = null;
  private lastCheckpointId: string | null = null;
  /** For the exit code: what this invocation did, and what could not run before it did anything. */
  private readonly doneThisRun = new Set<string>();
  private readonly failedThisRun = new Set<string>();
  private blockedAtStart = new Set<string>();
  recovery!: RecoverySummary;

  private constructor(
    readonly ws: Workspace,
    opts: Partial<OrchestratorOptions>,
  ) {
    this.opts = resolveOptions(DEFAULT_OPTIONS, opts);
  }

  /** The scheduling options this run uses (flags resolved over the defaults), as `start --json` reports them. */
  get effectiveOptions(): Record<string, number> {
    const o = this.opts;
    return {
      max_agents: o.maxAgents,
      checkpoint_every: o.checkpointEvery,
      checkpoint_interval_s: o.checkpointIntervalS,
      retry_backoff_ms: o.retryBackoffMs,
      poll_ms: o.pollMs,
    };
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }
  private warn(line: string, group?: WarningGroup): void {
    this.opts.warn?.(line, group);
  }

  get runId(): string {
    return this.dlog.runId;
  }

  /** Takes the lock and recovers; the caller then calls run(). On failure the lock is released. */
  static async open(ws: Workspace, opts: Partial<OrchestratorOptions>): Promise<Orchestrator> {
    const o = new Orchestrator(ws, opts);
    o.lock = await acquireLock(ws, "bernstein start");
    if (o.lock.tookOver) o.warn(o.lock.tookOver);
    try {
      await o.recover();
    } catch (err) {
      await o.closeQuietly();
      await o.lock.release();
      throw err;
    }
    return o;
  }

  private async closeQuietly(): Promise<void> {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.dlog) await this.dlog.wal.close().catch(() => {});
  }

  // ---------------------------------------------------------------- recovery

  /** Repairs torn tails of runs a crash left open, then verifies every chain; a break refuses. */
  private async verifyChains(): Promise<{ verified: number; repaired: number }> {
    let repaired = 0;
    const runs = await listRuns(this.ws);
    for (const run of runs) {
      if (await readClosedMarker(this.ws, run.run_id)) continue;
      // Opening the writer cuts a torn tail back to the last valid entry (kept in a sidecar).
      const w = await WalWriter.open(this.ws, run.run_id);
      if (w.repair) {
        repaired++;
        this.warn(
          `wal ${run.run_id}: repaired a torn tail (${w.repair.cut_bytes} bytes after seq ${w.repair.kept_last_seq} moved to ${w.repair.sidecar})`,
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
  private async refuseRolledBackWal(): Promise<void> {
    const { rollbacks } = await findWalRollbacks(this.ws);
    if (!rollbacks.length) return;
    const first = rollbacks[0];
    const more = rollbacks.length > 1 ? ` (and ${rollbacks.length - 1} more)` : "";
    throw new UserError(
      `refusing to start: WAL of run ${first.run_id} rolled back: ${first.message}${more}; ` +
        `inspect with \`bernstein wal verify --run ${first.run_id}\` and restore a good copy with \`bernstein dr restore\``,
      ExitCode.INTEGRITY,
      { rollbacks },
    );
  }

  /**
   * The audit log for task events. Without the workspace's key (and a log that already has
   * entries, so no new key may be minted) the run goes on without task events, and says why.
   */
  private async openAuditLog(): Promise<AuditLog | null> {
    try {
      const key = await loadAuditKeyForWriting(this.ws.auditDir, {
        keyFile: this.opts.auditKeyFile,
        keyFileFlag: "--key-file",
      });
      return await AuditLog.open(this.ws, key);
    } catch (err) {
      if (!(err instanceof AuditKeyMissingError)) throw err;
      this.warn(`task audit events are skipped: ${err.message}`);
      return null;
    }
  }

  private async recover(): Promise<void> {
    const ws = this.ws;
    await this.refuseRolledBackWal();
    await durableMkdir(ws.completedDir);
    await durableMkdir(ws.p("runtime", "agents"));
    await durableMkdir(ws.p("logs", "agents"));
    await durableMkdir(ws.p("runtime", "signals"));
    await durableMkdir(ws.p("runtime", "snapshot"));
    await clearStopRequest(ws);
    this.agentsCfg = await loadAgentsConfig(ws);
    const chains = await this.verifyChains();
    const loaded = await loadState(ws);
    // A promoted follower or a partial restore may lack task files and ledger rows of committed
    // decisions; the WAL holds them. Folders are moved by reconcileFolders after the replay.
    this.reportMaterialized(await materializeFromWal(ws, loaded.state, { moveMisplaced: false }));
    const runId = newRunId();
    // The summary exists before anything can count into it: replay handlers (an orphaned claim)
    // and the backlog scan (a malformed file) do, and both run before the replay returns.
    const rec: RecoverySummary = {
      run_id: runId,
      replay: emptyReplaySummary(),
      runs_verified: chains.verified,
      torn_tails_repaired: chains.repaired,
      reattached: 0,
      completions_collected: 0,
      orphaned_claims_requeued: 0,
      lost_agents_requeued: 0,
      adopted: 0,
      folders_repaired: 0,
      malformed: [],
    };
    this.recovery = rec;
    const wal = await WalWriter.open(ws, runId, { commitGate: this.opts.replication?.commitGate });
    this.opts.replication?.attachWriter(wal);
    const audit = await this.openAuditLog();
    this.dlog = new DecisionLog({ ws, wal, audit, state: loaded.state, onCommit: () => this.afterCommit() });
    this.statusFile = {
      pid: process.pid,
      run_id: runId,
      state: "recovering",
      started_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
      max_agents: this.opts.maxAgents,
    };
    await writeStatusFile(ws, this.statusFile);
    await this.dlog.info("orchestrator_started");
    await this.indexBacklogFiles();
    this.blockedAtStart = new Set(this.schedulable().blocked.map((b) => b.id));

    const replay = await replayWal(ws, { currentRunId: runId, writer: wal, handlers: this.replayHandlers() });
    for (const w of replay.warnings) this.warn(w, "idempotency store");
    for (const f of replay.failures)
      this.warn(
        `replay of ${f.decision_type} (run ${f.run_id}, seq ${f.seq}) failed: ${f.error}`,
        "replay failure",
      );
    if (replay.stale) {
      const listed = replay.stale_entries.length;
      this.warn(
        `${replay.stale} stale intent(s) not replayed (older than the staleness window)` +
          (listed < replay.stale ? `; the replay lists the first ${listed}` : ""),
      );
    }
    for (const e of replay.stale_entries)
      this.warn(`stale intent: run ${e.run_id} seq ${e.seq} ${e.decision_type}`, "stale intent");
    rec.replay = replay;
    rec.folders_repaired = await this.reconcileFolders();
    // Agents of the previous run: collect what finished while we were down, re-attach the rest.
    for (const s of sessions(this.dlog.state)) {
      const spec = taskView(this.dlog.state, s.task_id)?.spec;
      this.tracked.set(s.agent_id, {
        agentId: s.agent_id,
        taskId: s.task_id,
        attempt: s.attempt,
        since: Date.now(),
        timeoutS: spec?.timeout_s ?? 0,
      });
      if (await readCompletion(ws, s.agent_id)) rec.completions_collected++;
    }
    await this.collectCompletions();
    // Agents whose wrapper is provably gone are re-queued now, not after a grace period.
    await this.checkAgents();
    rec.reattached = sessions(this.dlog.state).length;
    // Claims that never got a spawn intent: nothing ran, put them back.
    for (const t of allTasks(this.dlog.state)) {
      if (t.state === "claimed" && !this.sessionAgent(t.id)) {
        await this.interrupt(t.id, t.attempt, "orphaned claim (no agent was spawned)");
        rec.orphaned_claims_requeued++;
      }
    }
    await this.removeStaleCompletions();
    rec.adopted = await this.adoptNewTasks();
    this.statusFile = { ...this.statusFile, state: "running", replay, updated_at: new Date().toISOString() };
    await writeStatusFile(ws, this.statusFile);
  }

  /** Where each task's file is (any folder). A task found in two folders is reported. */
  private async indexBacklogFiles(): Promise<void> {
    const scan = await scanBacklog(this.ws);
    for (const t of scan.tasks) {
      const st = taskView(this.dlog.state, t.spec.id)?.state;
      // With duplicates, prefer the copy in the folder the state names.
      if (!this.fileOf.has(t.spec.id) || t.state === st) this.fileOf.set(t.spec.id, t.file);
    }
    for (const [id, files] of scan.duplicates) {
      this.warn(
        `task ${id} is in more than one folder: ${files.map((f) => f.file).join(", ")}`,
        "task in two folders",
      );
    }
    this.reportMalformed(scan.malformed.map((m) => m.error));
  }

  private reportMaterialized(r: MaterializeResult): void {
    if (r.written.length || r.ledger_rows) {
      const ids = r.written.map((w) => w.id);
      const listed = ids.length > 20 ? `${ids.slice(0, 20).join(", ")}, ...` : ids.join(", ");
      this.warn(
        `wrote ${r.written.length} task file(s) and ${r.ledger_rows} ledger row(s) from the WAL (committed decisions whose files were missing: a promoted follower or a partial restore)${ids.length ? `: ${listed}` : ""}`,
      );
    }
    for (const p of r.problems) this.warn(p, "task file from the WAL");
  }

  private reportMalformed(errors: string[]): void {
    for (const e of errors) {
      if (this.malformedReported.has(e)) continue;
      this.malformedReported.add(e);
      this.recovery.malformed.push(e);
      this.warn(`malformed task file left in place: ${e}`, "malformed task file");
    }
  }

  /** The folder is the state: move any file the state disagrees with (a crash between rename and commit). */
  private async reconcileFolders(): Promise<number> {
    // Tasks whose task_created the replay just committed (their intent arrived without the file).
    const late = await materializeFromWal(this.ws, this.dlog.state, { moveMisplaced: false, ledger: false });
    for (const w of late.written) this.fileOf.set(w.id, w.file);
    this.reportMaterialized(late);
    let moved = 0;
    for (const t of allTasks(this.dlog.state)) {
      const file = this.fileOf.get(t.id);
      if (!file) continue;
      const folder = path.basename(path.dirname(file)) as TaskState;
      if (folder === t.state || folder === "closed") continue;
      await this.moveTask(t.id, t.state);
      moved++;
    }
    return moved;
  }

  private sessionAgent(taskId: string): string | undefined {
    return sessions(this.dlog.state).find((s) => s.task_id === taskId)?.agent_id;
  }

  /**
   * Handlers for uncommitted intents of previous runs. Each is idempotent: it first looks at the
   * state (the commit may be in the WAL already: a crash between commit and idempotency marker),
   * then finishes the action and commits, or rolls it back.
   */
  private replayHandlers(): Record<string, (entry: WalEntry) => Promise<void>> {
    const inputsOf = (e: WalEntry) =>
      e.inputs as { task_id?: string; attempt?: number; agent_id?: string; task?: TaskSpec };
    return {
      task_created: async (e) => {
        const spec = inputsOf(e).task;
        if (!spec || taskView(this.dlog.state, spec.id)) return;
        await this.dlog.commit("task_created", e.inputs, {});
        await this.dlog.auditTask("task.created", spec.id, { title: spec.title });
      },
      task_claimed: async (e) => {
        // An orphaned claim: the claim never committed, so no agent was spawned. Put the file back.
        const { task_id, attempt } = inputsOf(e);
        const t = task_id ? taskView(this.dlog.state, task_id) : undefined;
        if (!t || t.attempt >= (attempt ?? 0) || t.state !== "open") return;
        await this.moveTask(t.id, "open");
        this.recovery.orphaned_claims_requeued++;
      },
      task_spawn_confirmed: async (e) => {
        const { task_id, attempt, agent_id } = inputsOf(e);
        if (!task_id || attempt === undefined || !agent_id) return;
        const t = taskView(this.dlog.state, task_id);
        if (!t || t.state !== "claimed" || t.attempt !== attempt) return;
        if (sessions(this.dlog.state).some((s) => s.agent_id === agent_id)) return;
        // The wrapper may or may not have started. Spawn it again: its run-once token
        // (runtime/agents/<agent_id>.json, created O_EXCL) makes the duplicate exit without running.
        await this.spawnAgent(t, attempt, agent_id);
      },
      task_completed: async (e) => this.replayOutcome(e, "task_completed"),
      task_failed: async (e) => this.replayOutcome(e, "task_failed"),
      task_retry: async (e) => {
        const { task_id, attempt } = inputsOf(e);
        const t = task_id ? taskView(this.dlog.state, task_id) : undefined;
        if (!t || t.state !== "claimed" || sessions(this.dlog.state).some((s) => s.task_id === t.id)) return;
        await this.dlog.commit("task_retry", e.inputs, {});
        await this.moveTask(t.id, "open");
        await this.dlog.auditTask("task.retry", t.id, { attempt: attempt ?? t.attempt + 1 });
      },
      task_interrupted: async (e) => {
        const { task_id } = inputsOf(e);
        const t = task_id ? taskView(this.dlog.state, task_id) : undefined;
        if (!t || t.state !== "claimed") return;
        await this.moveTask(t.id, "open");
        await this.dlog.commit("task_interrupted", e.inputs, e.output);
        await this.dlog.auditTask("task.interrupted", t.id, {
          attempt: t.attempt,
          reason: String(e.output.reason ?? ""),
        });
      },
    };
  }

  /** Finishes a completion or failure whose intent (with its output) is durable but whose commit is not. */
  private async replayOutcome(e: WalEntry, type: "task_completed" | "task_failed"): Promise<void> {
    const { task_id, attempt } = e.inputs as { task_id?: string; attempt?: number };
    if (!task_id || attempt === undefined) return;
    const t = taskView(this.dlog.state, task_id);
    const agentId = agentIdOf(task_id, attempt);
    if (!t || t.attempt !== attempt || !sessions(this.dlog.state).some((s) => s.agent_id === agentId)) return;
    const out = e.output;
    await this.ledgerRowOnce(task_id, agentId, out);
    if (type === "task_completed") {
      await this.moveTask(task_id, "done");
      this.doneThisRun.add(task_id);
    } else if (out.terminal === true) {
      await this.moveTask(task_id, "failed");
      this.failedThisRun.add(task_id);
    }
    await this.dlog.commit(type, e.inputs, out);
    await this.dlog.auditTask(type === "task_completed" ? "task.completed" : "task.failed", task_id, {
      attempt,
      ...out,
    });
    if (type === "task_failed" && out.terminal !== true) await this.retry(task_id, attempt);
  }

  // ---------------------------------------------------------------- actions

  private async moveTask(id: string, to: TaskState): Promise<void> {
    let file = this.fileOf.get(id);
    if (!file) {
      this.warn(`task ${id}: no task file found; state recorded in the WAL only`, "missing task file");
      return;
    }
    try {
      this.fileOf.set(id, await moveTaskFile(this.ws, file, to));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // Moved already (a crash after the rename): find it by name in the other folders.
      for (const st of ["open", "claimed", "done", "failed"] as TaskState[]) {
        const candidate = path.join(this.ws.backlogDir(st), path.basename(file));
        if (
          await stat(candidate).then(
            () => true,
            () => false,
          )
        ) {
          file = candidate;
          this.fileOf.set(id, await moveTaskFile(this.ws, file, to));
          return;
        }
      }
      this.warn(
        `task ${id}: task file ${file} disappeared; state recorded in the WAL only`,
        "missing task file",
      );
    }
  }

  /** Adopts task files that appeared in backlog/open (written by `task add`), in id order. */
  private async adoptNewTasks(): Promise<number> {
    const names = await listStateFolder(this.ws, "open");
    const known = new Set<string>();
    for (const [id, f] of this.fileOf) if (taskView(this.dlog.state, id)) known.add(path.basename(f));
    const fresh: { spec: TaskSpec; file: string }[] = [];
    const errors: string[] = [];
    for (const name of names) {
      if (known.has(name)) continue;
      const file = path.join(this.ws.backlogDir("open"), name);
      // Files rejected before (malformed, id reused) are read again only when they change.
      const mtime = await stat(file).then(
        (st) => st.mtimeMs,
        () => -1,
      );
      if (mtime < 0 || this.rejected.get(file) === mtime) continue;
      try {
        fresh.push({ spec: await readTaskFile(file), file });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        errors.push((err as Error).message);
        this.rejected.set(file, mtime);
      }
    }
    this.reportMalformed(errors);
    fresh.sort((a, b) => (a.spec.id < b.spec.id ? -1 : a.spec.id > b.spec.id ? 1 : 0));
    let adopted = 0;
    for (const { spec, file } of fresh) {
      if (taskView(this.dlog.state, spec.id)) {
        this.rejected.set(
          file,
          await stat(file).then(
            (st) => st.mtimeMs,
            () => -1,
          ),
        );
        this.warn(
          `task file ${file} reuses id ${spec.id} of an existing task; left in place, not adopted`,
          "reused task id",
        );
        continue;
      }
      this.fileOf.set(spec.id, file);
      await this.dlog.decide("task_created", { task: spec as unknown as JsonObject }, async () => {});
      await this.dlog.auditTask("task.created", spec.id, { title: spec.title });
      adopted++;
    }
    return adopted;
  }

  private depsDone(t: TaskView): { ready: boolean; blockedBy?: string } {
    for (const dep of t.spec.depends_on) {
      const d = taskView(this.dlog.state, dep);
      if (d) {
        if (d.state === "done" || d.state === "closed") continue;
        if (d.state === "failed") return { ready: false, blockedBy: `dependency ${dep} failed` };
        return { ready: false };
      }
      // A task the WAL does not know (e.g. history from the Python original): its folder decides.
      const file = this.fileOf.get(dep);
      const folder = file ? path.basename(path.dirname(file)) : undefined;
      if (folder === "done" || folder === "closed") continue;
      return { ready: false, blockedBy: `dependency ${dep} is unknown` };
    }
    return { ready: true };
  }

  /** Open tasks ready to run, by priority then id; and those that never can. */
  private schedulable(): { ready: TaskView[]; waiting: number; blocked: { id: string; why: string }[] } {
    const ready: TaskView[] = [];
    const blocked: { id: string; why: string }[] = [];
    const backingOff: TaskView[] = [];
    let waiting = 0;
    const now = Date.now();
    for (const t of allTasks(this.dlog.state)) {
      if (t.state !== "open") continue;
      const d = this.depsDone(t);
      if (d.blockedBy) blocked.push({ id: t.id, why: d.blockedBy });
      else if (!d.ready) waiting++;
      else if ((this.notBefore.get(t.id) ?? 0) > now) {
        waiting++;
        backingOff.push(t);
      } else ready.push(t);
    }
    // A task waiting on a blocked one is blocked too (transitively).
    let changed = true;
    const blockedIds = new Set(blocked.map((b) => b.id));
    while (changed) {
      changed = false;
      for (const t of allTasks(this.dlog.state)) {
        if (t.state !== "open" || blockedIds.has(t.id)) continue;
        const dep = t.spec.depends_on.find((d) => blockedIds.has(d));
        if (dep) {
          blockedIds.add(t.id);
          blocked.push({ id: t.id, why: `dependency ${dep} is blocked` });
          waiting--;
          changed = true;
        }
      }
    }
    const order = (a: TaskView, b: TaskView) =>
      a.spec.priority - b.spec.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    ready.sort(order);
    // With one agent the order is strict: a retried task in backoff is waited for, never overtaken,
    // so which task runs next does not depend on how long the backoff took (fingerprint determinism).
    if (this.opts.maxAgents === 1 && backingOff.length && ready.length) {
      const firstWaiting = [...backingOff].sort(order)[0];
      if (order(firstWaiting, ready[0]) < 0) return { ready: [], waiting: waiting + ready.length, blocked };
    }
    return { ready, waiting, blocked };
  }

  private async claimAndSpawn(t: TaskView): Promise<void> {
    // task_retry records the next attempt's number; an attempt number whose run-once token was
    // never created ran no process and is used (again) as is. Otherwise: a new number.
    const unused = t.attempt > 0 && !(await exists(agentRecordPath(this.ws, agentIdOf(t.id, t.attempt))));
    const attempt = unused ? t.attempt : t.attempt + 1;
    await this.dlog.decide("task_claimed", { task_id: t.id, attempt }, async () => {
      await this.moveTask(t.id, "claimed");
    });
    await this.dlog.auditTask("task.claimed", t.id, { attempt });
    const claimed = taskView(this.dlog.state, t.id)!;
    await this.spawnAgent(claimed, attempt, agentIdOf(t.id, attempt));
  }

  /** spawn intent → start the wrapper (detached, own process group) → commit. */
  private async spawnAgent(t: TaskView, attempt: number, agentId: string): Promise<void> {
    const res = await resolveInvocation(this.agentsCfg, this.ws, t.spec);
    if (!res.ok) {
      await this.fail(t.id, attempt, null, {
        reason: res.reason,
        exit_code: null,
        terminal: true,
        cost_usd: 0,
        input_tokens: 0,
        output_tokens: 0,
        model: null,
      });
      return;
    }
    const inputs = { task_id: t.id, attempt, agent_id: agentId };
    await this.dlog.decide("task_spawn_confirmed", inputs, async () => {
      const job: WrapperJob = {
        sdd: this.ws.root,
        agent_id: agentId,
        task_id: t.id,
        attempt,
        argv: res.invocation.argv,
        cwd: res.invocation.cwd,
        env: res.invocation.env,
        timeout_s: t.spec.timeout_s,
      };
      const logFd = openSync(agentLogPath(this.ws, agentId), "a");
      let child: ChildProcess;
      try {
        child = spawn(process.execPath, [WRAPPER_MAIN, JSON.stringify(job)], {
          cwd: res.invocation.cwd,
          detached: true,
          stdio: ["ignore", logFd, logFd],
        });
      } finally {
        closeSync(logFd);
      }
      const tr: Tracked = {
        agentId,
        taskId: t.id,
        attempt,
        child,
        since: Date.now(),
        timeoutS: t.spec.timeout_s,
      };
      child.on("exit", (code) => {
        tr.childExit = code;
        this.wake();
      });
      child.on("error", () => {
        tr.childExit = -1;
        this.wake();
      });
      child.unref();
      this.tracked.set(agentId, tr);
    });
    await this.dlog.auditTask("task.spawned", t.id, { attempt, agent_id: agentId, agent: res.agent });
  }

  /** A cost-ledger row per usage; never twice for one agent (replay after a crash mid-decision). */
  private async ledgerRowOnce(taskId: string, agentId: string, out: JsonObject): Promise<void> {
    const usage = usageOf(out);
    if (!usage) return;
    if (!this.ledgerAgentIds) this.ledgerAgentIds = await ledgerAgentIds(this.ws);
    if (this.ledgerAgentIds.has(agentId)) return;
    await appendCostRow(this.ws, { run_id: this.runId, task_id: taskId, agent_id: agentId, ...usage });
    this.ledgerAgentIds.add(agentId);
  }

  private async complete(agentId: string, rec: CompletionRecord): Promise<void> {
    const tr = this.tracked.get(agentId);
    const s = sessions(this.dlog.state).find((x) => x.agent_id === agentId);
    if (!s) return;
    const usage = {
      cost_usd: rec.cost_usd ?? 0,
      input_tokens: rec.input_tokens ?? 0,
      output_tokens: rec.output_tokens ?? 0,
      model: rec.model ?? null,
    };
    const t = taskView(this.dlog.state, s.task_id)!;
    if (rec.error === null && rec.exit_code === 0 && !rec.timed_out) {
      const out = { exit_code: 0, ...usage };
      await this.dlog.decide(
        "task_completed",
        { task_id: s.task_id, attempt: s.attempt },
        async () => {
          await this.ledgerRowOnce(s.task_id, agentId, out);
          await this.moveTask(s.task_id, "done");
        },
        out,
      );
      await this.dlog.auditTask("task.completed", s.task_id, { attempt: s.attempt, ...out });
      this.doneThisRun.add(s.task_id);
    } else {
      const reason =
        rec.error ??
        (rec.timed_out
          ? `timed out after ${tr?.timeoutS ?? t.spec.timeout_s}s (process group killed)`
          : rec.signal
            ? `killed by ${rec.signal}`
            : `exit code ${rec.exit_code}`);
      await this.fail(s.task_id, s.attempt, agentId, {
        reason,
        exit_code: rec.exit_code,
        terminal: rec.error !== null && rec.error.startsWith("agent binary not found") ? true : null,
        ...usage,
      });
    }
    this.tracked.delete(agentId);
    await durableUnlink(completionPath(this.ws, agentId)).catch(() => {});
  }

  /** task_failed (terminal when no retry is left or retrying cannot help), then task_retry. */
  private async fail(
    taskId: string,
    attempt: number,
    agentId: string | null,
    facts: {
      reason: string;
      exit_code: number | null;
      terminal: boolean | null;
      cost_usd: number;
      input_tokens: number;
      output_tokens: number;
      model: string | null;
    },
  ): Promise<void> {
    const t = taskView(this.dlog.state, taskId)!;
    const terminal = facts.terminal ?? t.failures + 1 > t.spec.max_retries;
    const out = { ...facts, terminal } as JsonObject;
    await this.dlog.decide(
      "task_failed",
      { task_id: taskId, attempt },
      async () => {
        if (agentId) await this.ledgerRowOnce(taskId, agentId, out);
        if (terminal) await this.moveTask(taskId, "failed");
      },
      out,
    );
    await this.dlog.auditTask("task.failed", taskId, { attempt, ...out });
    if (terminal) {
      this.failedThisRun.add(taskId);
      this.warn(`task ${taskId} failed: ${facts.reason}`, "failed task");
    } else await this.retry(taskId, attempt);
  }

  private async retry(taskId: string, attempt: number): Promise<void> {
    const t = taskView(this.dlog.state, taskId)!;
    await this.dlog.decide("task_retry", { task_id: taskId, attempt: attempt + 1 }, async () => {
      await this.moveTask(taskId, "open");
    });
    await this.dlog.auditTask("task.retry", taskId, { attempt: attempt + 1 });
    const delay = Math.min(this.opts.retryBackoffMs * 2 ** Math.max(0, t.failures - 1), 60_000);
    this.notBefore.set(taskId, Date.now() + delay);
    setTimeout(() => this.wake(), delay + 5).unref();
  }

  /** task_interrupted: back to open, a new attempt later (stop --force, orphaned claim, lost agent). */
  private async interrupt(taskId: string, attempt: number, reason: string): Promise<void> {
    await this.dlog.decide(
      "task_interrupted",
      { task_id: taskId, attempt },
      async () => {
        await this.moveTask(taskId, "open");
      },
      { reason },
    );
    await this.dlog.auditTask("task.interrupted", taskId, { attempt, reason });
  }

  // ---------------------------------------------------------------- monitoring

  private async collectCompletions(): Promise<number> {
    let n = 0;
    const waiting = new Set(await listCompletions(this.ws));
    for (const s of sessions(this.dlog.state)) {
      if (!waiting.has(s.agent_id)) continue;
      const rec = await readCompletion(this.ws, s.agent_id);
      if (!rec) continue;
      await this.complete(s.agent_id, rec);
      n++;
    }
    return n;
  }

  /** Completion records of agents the state no longer has (handled before a crash). */
  private async removeStaleCompletions(): Promise<void> {
    const live = new Set(sessions(this.dlog.state).map((s) => s.agent_id));
    for (const id of await listCompletions(this.ws)) {
      if (!live.has(id)) await durableUnlink(completionPath(this.ws, id)).catch(() => {});
    }
  }

  /** Sessions whose wrapper is gone without a completion record: re-queued (the command may have run partly). */
  private async checkAgents(): Promise<void> {
    const now = Date.now();
    const wrappers = wrapperScan(this.ws.root);
    for (const s of sessions(this.dlog.state)) {
      let tr = this.tracked.get(s.agent_id);
      if (!tr) {
        tr = { agentId: s.agent_id, taskId: s.task_id, attempt: s.attempt, since: now, timeoutS: 0 };
        this.tracked.set(s.agent_id, tr);
      }
      const record = await readAgentRecord(this.ws, s.agent_id);
      let gone: boolean;
      if (!record) {
        // No run-once token: not started yet, died before creating it, or a session of a history
        // without tokens.
        const ourChildDied =
          tr.child !== undefined && tr.childExit !== undefined && tr.childExit !== EXIT_DUPLICATE;
        // A wrapper an earlier orchestrator spawned: the process table says whether it is still
        // starting (it existed before its spawn was committed). Ours, or without /proc: a grace period.
        const inTable = tr.child === undefined ? await wrappers() : null;
        gone =
          ourChildDied || (inTable ? !inTable.has(s.agent_id) : now - tr.since > this.opts.lostAgentGraceMs);
      } else {
        gone = !agentAlive(record);
        if (!gone && tr.timeoutS > 0) {
          const started = Date.parse(record.started_at);
          if (now - started > (tr.timeoutS + TERMINAL_GRACE_S) * 1000) {
            // The wrapper enforces the timeout; this is the backstop if it could not.
            killAgent(record);
            gone = true;
          }
        }
      }
      if (!gone) continue;
      const rec = await readCompletion(this.ws, s.agent_id);
      if (rec) {
        await this.complete(s.agent_id, rec);
        continue;
      }
      this.tracked.delete(s.agent_id);
      this.recovery.lost_agents_requeued++;
      this.warn(
        `agent ${s.agent_id} is gone without a completion record; task ${s.task_id} re-queued`,
        "lost agent",
      );
      await this.interrupt(s.task_id, s.attempt, "agent lost (no completion record)");
    }
  }

  // ---------------------------------------------------------------- checkpoints and the loop

  /**
   * A decision boundary (no decision half made): answer a DR backup's pause request. Pending
   * completion records are collected into the WAL before the pause is acknowledged — backups leave
   * `runtime/completed/` out, so an attempt that finished must be in the WAL the snapshot holds.
   */
  private async atSnapshotBoundary(): Promise<void> {
    this.snapshotResponder ??= new SnapshotResponder(this.ws);
    await this.snapshotResponder.atDecisionBoundary(async () => {
      await this.collectCompletions();
      const pos = this.dlog.wal.durablePosition;
      return pos ? { [pos.runId]: { seq: pos.seq, entry_hash: pos.entry_hash } } : {};
    });
  }

  private snapshotResponder?: SnapshotResponder;

  private afterCommit(): void {
    this.commitsSinceCheckpoint++;
  }

  private async maybeCheckpoint(force = false): Promise<void> {
    const dueByCount =
      this.opts.checkpointEvery > 0 && this.commitsSinceCheckpoint >= this.opts.checkpointEvery;
    const dueByTime =
      this.opts.checkpointIntervalS > 0 &&
      this.commitsSinceCheckpoint > 0 &&
      Date.now() - this.lastCheckpointAt >= this.opts.checkpointIntervalS * 1000;
    if (!force && !dueByCount && !dueByTime) return;
    await this.writeCheckpoint(force);
    this.commitsSinceCheckpoint = 0;
    this.lastCheckpointAt = Date.now();
  }

  private async writeCheckpoint(atStop = false): Promise<void> {
    const cp = await checkpointState(this.ws, this.dlog.state, { sessionRow: atStop });
    this.lastCheckpointId = cp.checkpoint_id;
  }

  private wake(): void {
    const r = this.wakeResolve;
    this.wakeResolve = null;
    r?.();
  }

  private sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake(), this.opts.pollMs);
      this.wakeResolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private watchFolders(): void {
    const dirs = [
      this.ws.completedDir,
      this.ws.p("runtime", "signals"),
      this.ws.p("runtime", "snapshot"),
      this.ws.backlogDir("open"),
    ];
    for (const dir of dirs) {
      try {
        this.watchers.push(watch(dir, () => this.wake()));
      } catch {
        // polling covers it
      }
    }
  }

  private async checkStopRequest(): Promise<void> {
    if (this.stopping === "force") return;
    const req = await readStopRequest(this.ws);
    if (!req) return;
    if (req.mode === "force") {
      this.stopping = "force";
      return;
    }
    if (!this.stopping) {
      this.stopping = "drain";
      this.stopDeadline = Date.now() + req.timeout_s * 1000;
      this.log(
        `stop requested: draining (no new claims, waiting up to ${req.timeout_s}s for running agents)`,
      );
      this.statusFile = { ...this.statusFile, state: "draining", updated_at: new Date().toISOString() };
      await writeStatusFile(this.ws, this.statusFile);
    }
  }

  /** stop --force: kill every agent's process groups, then record those tasks as interrupted. */
  private async forceStop(): Promise<void> {
    for (const s of sessions(this.dlog.state)) {
      // A wrapper we spawned is the leader of its own group, even before it wrote its pid record.
      const child = this.tracked.get(s.agent_id)?.child;
      if (child?.pid && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      const record = await readAgentRecord(this.ws, s.agent_id);
      if (record) killAgent(record);
    }
    await new Promise((r) => setTimeout(r, 100));
    // A command group recorded after the first pass (the wrapper was starting): kill it too.
    for (const s of sessions(this.dlog.state)) {
      const record = await readAgentRecord(this.ws, s.agent_id);
      if (record?.command_pgid) {
        try {
          process.kill(-record.command_pgid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    for (const s of sessions(this.dlog.state)) {
      const rec = await readCompletion(this.ws, s.agent_id);
      if (rec && rec.exit_code === 0 && !rec.timed_out && rec.error === null) {
        await this.complete(s.agent_id, rec); // it finished just before the kill
        continue;
      }
      await this.interrupt(s.task_id, s.attempt, "stop --force killed the agent");
      this.tracked.delete(s.agent_id);
      await durableUnlink(completionPath(this.ws, s.agent_id)).catch(() => {});
    }
  }

  /** Schedules until idle (with untilIdle) or a stop request; then shuts down cleanly. */
  async run(): Promise<RunResult> {
    this.watchFolders();
    let reason: RunResult["reason"] = "idle";
    let lastBlocked: { id: string; why: string }[] = [];
    try {
      while (true) {
        await this.checkStopRequest();
        if (this.stopping === "force") {
          await this.forceStop();
          reason = "forced";
          break;
        }
        await this.collectCompletions();
        await this.checkAgents();
        await this.adoptNewTasks();
        const sched = this.schedulable();
        lastBlocked = sched.blocked;
        if (!this.stopping) {
          let running = sessions(this.dlog.state).length;
          for (const t of sched.ready) {
            if (running >= this.opts.maxAgents) break;
            await this.claimAndSpawn(t);
            running = sessions(this.dlog.state).length;
          }
        }
        await this.maybeCheckpoint();
        const running = sessions(this.dlog.state).length;
        if (this.stopping === "drain" && (running === 0 || Date.now() >= this.stopDeadline)) {
          if (running)
            this.log(`stop timeout: leaving ${running} agent(s) running; the next start re-attaches them`);
          reason = "stopped";
          break;
        }
        if (this.opts.untilIdle && running === 0) {
          const again = this.schedulable();
          if (again.ready.length === 0 && again.waiting === 0) {
            lastBlocked = again.blocked;
            break;
          }
        }
        this.opts.flushWarnings?.();
        // DR: a backup asked for a consistent snapshot; hold here, between decisions.
        await this.atSnapshotBoundary();
        await this.sleep();
      }
      return await this.shutdown(reason, lastBlocked);
    } finally {
      for (const w of this.watchers) w.close();
      this.watchers = [];
    }
  }

  /** Checkpoint, `orchestrator_stopped`, closed WAL: the next start has nothing to replay. */
  private async shutdown(
    reason: RunResult["reason"],
    blocked: { id: string; why: string }[],
  ): Promise<RunResult> {
    await this.maybeCheckpoint(true);
    await this.dlog.info("orchestrator_stopped", {}, { reason });
    const counts: Record<string, number> = { open: 0, claimed: 0, done: 0, failed: 0 };
    for (const t of allTasks(this.dlog.state)) counts[t.state] = (counts[t.state] ?? 0) + 1;
    const failed = allTasks(this.dlog.state)
      .filter((t) => t.state === "failed")
      .map((t) => t.id);
    await this.dlog.wal.close({ markClosed: true, reason: "orchestrator_stopped" });
    await clearStopRequest(this.ws);
    // The exit code reports this invocation, not history: a failure a previous run already
    // reported must not fail every later run (cron and CI could not tell a new failure from it).
    const newlyBlocked = blocked.filter((b) => !this.blockedAtStart.has(b.id)).map((b) => b.id);
    const exit =
      reason === "idle" && (this.failedThisRun.size > 0 || newlyBlocked.length > 0)
        ? ExitCode.CHECK_FAILED
        : ExitCode.OK;
    this.statusFile = {
      ...this.statusFile,
      state: "stopped",
      exit_code: exit,
      updated_at: new Date().toISOString(),
    };
    await writeStatusFile(this.ws, this.statusFile);
    await this.lock.release();
    for (const b of blocked) this.warn(`task ${b.id} cannot run: ${b.why}`, "blocked task");
    return {
      run_id: this.runId,
      reason,
      exit_code: exit,
      counts,
      blocked: blocked.map((b) => b.id),
      failed,
      this_run: {
        done: this.doneThisRun.size,
        failed: [...this.failedThisRun].sort(),
        blocked: newlyBlocked,
      },
      decisions: this.dlog.commits,
    };
  }
}

/** SIGKILL the command's process group and the wrapper's. */
export function killAgent(record: AgentRecord): void {
  if (record.hostname !== os.hostname()) return;
  for (const pgid of [record.command_pgid, agentAlive(record) ? record.pid : null]) {
    if (!pgid) continue;
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
