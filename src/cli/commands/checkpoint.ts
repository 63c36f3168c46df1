/**
 * `bernstein checkpoint [--goal TEXT]`: load the state (newest valid checkpoint + WAL suffix),
 * write a new checkpoint atomically, write the operator row `sessions/<ts>-checkpoint.json`, and
 * record an audit event. `checkpoint list` and `checkpoint show ID` validate what is on disk.
 */
import { stat } from "node:fs/promises";
import type { Command } from "../../vendor/commander.js";
import { loadAuditKeyForWriting } from "../../audit/key.js";
import { AuditLog } from "../../audit/log.js";
import { formatUsd } from "../../ledger/cost-ledger.js";
import {
  checkpointFile,
  DEFAULT_RETENTION,
  listCheckpointFiles,
  validateCheckpointFile,
  writeCheckpoint,
  type CheckpointCheck,
} from "../../checkpoint/checkpoint.js";
import { sessionRowOf, writeSessionRow } from "../../checkpoint/session-row.js";
import { repositoryHead } from "../../orchestrator/git/repo.js";
import { stateCounts } from "../../state/reducer.js";
import { loadState } from "../../checkpoint/load-state.js";
import { openWorkspace } from "../../workspace/layout.js";
import { shown } from "../../workspace/shown-path.js";
import { acquireLock, describeHolder, type LockInfo } from "../../workspace/lock.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { intOption } from "../number-option.js";
import { Output, globalsOf } from "../output.js";

function summary(check: CheckpointCheck) {
  if (check.ok) {
    const cp = check.checkpoint;
    const counts = stateCounts({
      tasks: cp.task_graph,
      agent_sessions: cp.agent_sessions,
      cost: cp.cost_accumulator,
      wal_position: null,
    });
    return {
      id: check.id,
      file: check.file,
      valid: true,
      created_at: cp.metadata.created_at,
      bernstein_version: cp.metadata.bernstein_version,
      task_count: cp.metadata.task_count,
      completed_count: cp.metadata.completed_count,
      failed_count: cp.metadata.failed_count,
      open_count: counts.open_count,
      claimed_count: counts.claimed_count,
      agent_sessions: Object.keys(cp.agent_sessions).length,
      cost_usd: cp.metadata.cost_usd,
      plan_file: cp.metadata.plan_file,
      wal_position: cp.wal_position,
    };
  }
  const md = check.metadata;
  return {
    id: check.id,
    file: check.file,
    valid: false,
    kind: check.kind,
    problem: check.problem,
    created_at: typeof md?.created_at === "string" ? md.created_at : null,
  };
}

export function registerCheckpoint(program: Command): void {
  const cp = program
    .command("checkpoint")
    .description("write a checkpoint of the orchestrator state (list, show ID)")
    .option("--goal <text>", "what this session is working towards (operator row)")
    .option("--plan-file <file>", "plan file to record in the checkpoint metadata")
    .option(
      "--retain <n>",
      `keep the newest N checkpoints (default ${DEFAULT_RETENTION})`,
      intOption("--retain", 1),
    )
    .action(async (opts: { goal?: string; planFile?: string; retain?: number }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const retain = opts.retain ?? DEFAULT_RETENTION;
      const ws = await openWorkspace(g.sdd);
      // The checkpoint records the path for whoever resumes the session: one that names nothing
      // is a typo, recorded for good.
      if (opts.planFile !== undefined && !(await stat(opts.planFile).catch(() => undefined))?.isFile())
        throw new UserError(`checkpoint: --plan-file ${opts.planFile}: not an existing file`, ExitCode.USAGE);
      const loaded = await loadState(ws);
      for (const w of loaded.warnings) out.warn(w);
      const written = await writeCheckpoint(ws, loaded.state, { planFile: opts.planFile ?? null, retain });
      const row = sessionRowOf(loaded.state, {
        goal: opts.goal ?? null,
        checkpointId: written.checkpoint_id,
        gitSha: (await repositoryHead(ws.projectDir))?.commit ?? null,
      });
      const rowFile = await writeSessionRow(ws, row);
      // The audit event is best effort: a missing or unsafe key must not cost the checkpoint.
      let audit: { written: boolean; error?: string; key_path?: string };
      try {
        // The chain has one writer, the lock's holder: an event appended beside a running
        // orchestrator would fork it (its next entry links to the entry before ours).
        const lock = await acquireLock(ws, "bernstein checkpoint").catch((err: unknown) => {
          const holder = (err as UserError).details?.holder as LockInfo | undefined;
          if (!holder) throw err;
          throw new Error(`${describeHolder(holder)} holds the workspace and writes its audit log`);
        });
        try {
          const key = await loadAuditKeyForWriting(ws.auditDir);
          const log = await AuditLog.open(ws, key);
          await log.append({
            event_type: "checkpoint.created",
            actor: "bernstein",
            resource_type: "checkpoint",
            resource_id: written.checkpoint_id,
            details: {
              wal_position: written.wal_position as never,
              task_count: written.metadata.task_count,
              cost_usd: written.metadata.cost_usd,
            },
          });
          audit = { written: true, key_path: key.path };
        } finally {
          await lock.release();
        }
      } catch (err) {
        audit = { written: false, error: (err as Error).message };
        out.warn(`checkpoint written but not audited: ${(err as Error).message}`);
      }
      out.result(
        {
          ok: true,
          checkpoint_id: written.checkpoint_id,
          file: written.file,
          metadata: written.metadata,
          wal_position: written.wal_position,
          based_on: loaded.checkpoint?.id ?? null,
          wal_entries_applied: loaded.applied,
          session_row: rowFile,
          pruned: written.pruned,
          audit,
          warnings: loaded.warnings,
        },
        () => {
          const p = written.wal_position;
          out.line(`Checkpoint ${written.checkpoint_id} written: ${shown(written.file)}`);
          out.line(
            `  tasks ${written.metadata.task_count} (done ${written.metadata.completed_count}, failed ${written.metadata.failed_count}), ` +
              `cost ${formatUsd(written.metadata.cost_usd)}`,
          );
          out.line(
            `  WAL position: ${p ? `${p.run_id}#${p.seq} ${p.entry_hash.slice(0, 12)}…` : "none (empty WAL)"}`,
          );
          out.line(`  operator row: ${shown(rowFile)}`);
          if (written.pruned.length)
            out.line(`  retention removed ${written.pruned.length}: ${written.pruned.join(", ")}`);
        },
      );
    });

  cp.command("list")
    .description("list checkpoints, newest first, with validity")
    .action(async (_opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const rows: ReturnType<typeof summary>[] = [];
      for (const c of await listCheckpointFiles(ws))
        rows.push(summary(await validateCheckpointFile(ws, c.file)));
      out.result({ ok: true, checkpoints: rows }, () => {
        if (rows.length === 0) out.line("no checkpoints");
        for (const r of rows) {
          if (r.valid && "task_count" in r) {
            const p = r.wal_position;
            out.line(
              `${r.id}  ${r.created_at}  tasks ${r.task_count}  cost ${formatUsd(Number(r.cost_usd))}  ` +
                `wal ${p ? `${p.run_id}#${p.seq}` : "-"}`,
            );
          } else if ("problem" in r) {
            out.line(`${r.id}  INVALID (${r.kind}): ${r.problem}`);
          }
        }
      });
    });

  cp.command("show")
    .description("show and validate one checkpoint (exit 5 when invalid)")
    .argument("<id>", "checkpoint id (as in `checkpoint list`)")
    .action(async (id: string, _opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const bare = id.replace(/^checkpoint-/, "").replace(/\.json$/, "");
      const known = (await listCheckpointFiles(ws)).find((c) => c.id === bare);
      if (!known) throw new UserError(`checkpoint ${bare} not found in ${ws.checkpointsDir}`, ExitCode.USAGE);
      const check = await validateCheckpointFile(ws, checkpointFile(ws, bare));
      const s = summary(check);
      const sessions = check.ok ? Object.values(check.checkpoint.agent_sessions) : [];
      const byModel = check.ok ? check.checkpoint.cost_accumulator.by_model : {};
      out.result({ ok: check.ok, checkpoint: s, agent_sessions: sessions, cost_by_model: byModel }, () => {
        for (const [k, v] of Object.entries(s)) {
          out.line(`${k.padEnd(18)} ${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`);
        }
        for (const a of sessions) out.line(`session            ${a.agent_id}`);
      });
      if (!check.ok) {
        if (out.opts.json || out.opts.quiet)
          process.stderr.write(`bernstein: checkpoint ${bare} is invalid: ${check.problem}\n`);
        process.exitCode = ExitCode.CORRUPT;
      }
    });
}
