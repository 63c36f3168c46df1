/**
 * `bernstein dr status|promote|runbook`: the replication side of the `dr` group. The group itself
 * belongs to the DR commands (backup/restore/...); these attach to it (or create it when it is not
 * registered yet), so this module must be registered after them.
 */
import type { Command } from "../../vendor/commander.js";
import { readFile } from "node:fs/promises";
import { writeRunbook } from "../../replication/failover.js";
import { TOKEN_ENV } from "../../replication/auth.js";
import { loadTokenFile } from "../../replication/auth.js";
import { replicationAuditor } from "../../replication/audit.js";
import { gatherStatus } from "../../replication/status.js";
import { parsePeerUrl } from "../../replication/client.js";
import { lagIsCurrent, stoppedSince, type ArchiveHealthReport } from "../../archive/health.js";
import { describeSnapshotBreak } from "../../archive/archive-status.js";
import { describeLeftover } from "../../storage/local-copy.js";
import { openWorkspace } from "../../workspace/layout.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { printable, shellWord, shown } from "../../workspace/shown-path.js";
import { counted } from "../../workspace/counted.js";

function drGroup(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === "dr");
  return (
    existing ??
    program
      .command("dr")
      .description("disaster recovery: backups, restore, replication status, promotion, runbooks")
  );
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

async function caFile(file?: string): Promise<Buffer | undefined> {
  if (!file) return undefined;
  return readFile(file).catch(() => {
    throw new UserError(`--tls-ca ${file}: cannot read`, ExitCode.USAGE);
  });
}

function fmtNum(v: number | null | undefined, unit = ""): string {
  if (v === null || v === undefined) return "unknown";
  return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
}

function describeArchive(a: ArchiveHealthReport): string {
  const state = a.running ? `running (pid ${a.pid})` : `not running (last seen ${a.updated_at})`;
  const errors = a.errors_in_a_row > 0 ? `, FAILING x${a.errors_in_a_row}: ${a.last_error}` : "";
  // Status files of archivers from before held-back bytes were reported lack these fields.
  const held = (a.held_back ?? []).map((h) => `, STALLED: ${h.message} (since ${h.since})`).join("");
  const broken = (a.wal_breaks ?? [])
    .map((b) => `, DAMAGED: ${describeSnapshotBreak(b)}, base snapshot ${b.snapshot} holds it`)
    .join("");
  const lost = a.last_continuity_loss
    ? `, new generation after a change in the workspace at ${a.last_continuity_loss.at}: ${a.last_continuity_loss.message}`
    : "";
  const blocked =
    a.running && a.decisions_waiting > 0
      ? `; --sync: ${a.decisions_waiting} commit group(s) wait for the store, no decision is acted on until it answers`
      : "";
  return `${shown(a.destination)} ${state}${a.sync ? " (--sync)" : ""}, lag ${a.lag_entries} entries${a.lag_bytes ? ` (${a.lag_bytes} bytes held back)` : ""} / ${a.lag_seconds} s, last upload ${a.last_upload_at ?? "never"}${a.window_start_at ? `, restorable from ${a.window_start_at}` : ""}${errors}${lost}${held}${broken}${describeCompaction(a)}${blocked}`;
}

/** Background compaction's part of the archive line: failing (since when, why), or when it last completed. */
function describeCompaction(a: ArchiveHealthReport): string {
  // Status files of archivers from before compaction was reported lack these fields.
  const failing = a.compaction_errors_in_a_row ?? 0;
  const lastError = a.last_compaction_error;
  if (failing > 0 && lastError)
    return `, compaction FAILING x${failing} (last at ${lastError.at}): ${lastError.message}`;
  return a.last_compaction_at ? `, last compaction ${a.last_compaction_at}` : "";
}

/** `dr status`: role, epoch, WAL position, followers, backup, RPO; exit 8 when fenced or halted. */
function registerStatus(dr: Command): void {
  dr.command("status")
    .description(
      "replication and recovery status of this node: role, epoch, WAL position, followers, backup, RPO (exit 8 if fenced or halted)",
    )
    .option("--token-file <file>", `token to ask the live replication process (or env ${TOKEN_ENV})`)
    .option("--tls-ca <file>", "CA to trust when the live process serves https")
    .action(async (flags: { tokenFile?: string; tlsCa?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const st = await gatherStatus(ws, { tokenFile: flags.tokenFile, tlsCa: await caFile(flags.tlsCa) });
      const { nodes: _nodes, thresholds: _t, archive, ...doc } = st;
      for (const p of st.backup_log_problems) out.warn(p);
      out.result({ ok: !st.problem, ...doc, archive }, () => {
        out.line(
          `Node:      ${st.role}${st.region ? ` (${shellWord(st.region)})` : ""}, epoch ${st.epoch}${st.fenced ? ` — FENCED: ${printable(st.fenced_reason ?? "")}` : ""}`,
        );
        if (st.leader_url) out.line(`Leader:    ${st.leader_url}`);
        out.line(
          `WAL:       ${st.wal.position ? `${st.wal.position.run_id}#${st.wal.position.seq}` : "empty"} (${st.wal.runs.length} run(s))`,
        );
        if (st.live)
          out.line(
            `Process:   pid ${st.live.pid} at ${st.live.url}${st.live.reachable ? "" : ` (not answering: ${printable(st.live.error ?? "")})`}`,
          );
        else out.line("Process:   no replication process running for this workspace");
        if (st.policy)
          out.line(
            `Policy:    ${st.policy}${st.policy_state ? ` — ${st.policy_state}` : ""}${st.policy_reason ? `: ${printable(st.policy_reason)}` : ""}`,
          );
        if (st.integrity_error) out.line(`Integrity: ERROR ${printable(st.integrity_error)}`);
        if (st.lag) out.line(`Lag:       ${fmtNum(st.lag.entries)} entries, ${fmtNum(st.lag.seconds, " s")}`);
        for (const f of st.followers) {
          out.line(
            `Follower:  ${shellWord(f.name).padEnd(12)} ${f.health.padEnd(11)} lag ${fmtNum(f.lag_entries)} entries / ${fmtNum(f.lag_seconds, " s")}, last ack ${f.last_ack_at ?? "never"}`,
          );
        }
        out.line(
          `Backup:    ${st.last_backup ? `${shown(st.last_backup.location)} (${fmtNum(st.last_backup.age_seconds, " s")} old${st.last_backup.verified ? "" : "; never read back: `dr verify` it"})` : "none recorded"}`,
        );
        if (archive) out.line(`Archive:   ${describeArchive(archive)}`);
        for (const c of st.leftover_local_copies) out.line(`Leftover:  ${describeLeftover(c, "found")}`);
        out.line(
          `RPO:       ${fmtNum(st.rpo_estimate.entries)} entries, ${fmtNum(st.rpo_estimate.seconds, " s")} (${
            // The basis names the archive's destination as recorded (absolute, for --json).
            archive
              ? st.rpo_estimate.basis.replace(archive.destination, shown(archive.destination))
              : st.rpo_estimate.basis
          })`,
        );
        out.line(
          `Failover:  ${st.failover.decision}${st.failover.reasons.length ? ` — ${st.failover.reasons.join("; ")}` : ""}`,
        );
      });
      if (st.problem)
        out.failed(
          ExitCode.REPLICATION,
          `dr status: ${st.fenced ? `fenced: ${st.fenced_reason}` : `the leader halted: ${st.policy_reason ?? "its ack policy is not met"}`}`,
        );
    });
}

/** `dr promote`: this follower becomes the leader (see replication/promote.ts). */
function registerPromote(dr: Command): void {
  dr.command("promote")
    .description(
      "turn this follower into the leader: gather the newest entries from its peers, fence them, raise the epoch",
    )
    .option("--token-file <file>", `token for the peers (or env ${TOKEN_ENV})`)
    .option(
      "--peer <url>",
      "another follower's endpoint (repeat); default: the followers the leader reported",
      (v: string, previous: string[]) => collect(parsePeerUrl(v, `--peer ${v}`), previous),
      [],
    )
    .option(
      "--new-leader-url <url>",
      "where this node will serve as leader; fenced peers re-point to it",
      (v: string) => parsePeerUrl(v, `--new-leader-url ${v}`),
    )
    .option(
      "--force",
      "promote even when too few peers answer (the no-loss and no-split-brain guarantees are lost)",
    )
    .option("--tls-ca <file>", "CA to trust for https peers")
    .action(
      async (
        flags: { tokenFile?: string; peer: string[]; newLeaderUrl?: string; force?: boolean; tlsCa?: string },
        cmd: Command,
      ) => {
        const g = globalsOf(cmd);
        const out = Output.of(cmd);
        const ws = await openWorkspace(g.sdd);
        const token = flags.tokenFile
          ? await loadTokenFile(flags.tokenFile)
          : (process.env[TOKEN_ENV]?.trim() ?? null);
        const log = (line: string): void => {
          if (!g.quiet) process.stderr.write(line + "\n");
        };
        // Loaded here: a promotion rebuilds the orchestrator's files (task parsing, the engine's
        // state), which `dr status` and `dr runbook` beside it need none of.
        const [{ promote }, { materializeFromBase }] = await Promise.all([
          import("../../replication/promote.js"),
          import("../../replication/snapshot.js"),
        ]);
        const r = await promote({
          ws,
          token,
          tlsCa: await caFile(flags.tlsCa),
          peers: flags.peer,
          newLeaderUrl: flags.newLeaderUrl,
          force: Boolean(flags.force),
          log,
          materialize: materializeFromBase,
        });
        await replicationAuditor(ws, { warn: (line) => out.warn(line) })("replication_promoted", {
          epoch: r.epoch,
          previous_epoch: r.previous_epoch,
          reached: r.reached,
          promotion_quorum: r.promotion_quorum,
          forced: r.forced,
          wal: r.wal,
        }).catch((err: Error) => out.warn(`audit event not written: ${err.message}`));
        for (const w of r.warnings) out.warn(w);
        out.result(r, () => {
          out.line(`Promoted ${shown(r.sdd)} to leader at epoch ${r.epoch} (was ${r.previous_epoch}).`);
          out.line(
            `Reached ${counted(r.reached, "follower")} (this one included); a promotion under ${r.policy} needs ${r.promotion_quorum}.`,
          );
          for (const p of r.peers) {
            out.line(
              `  peer ${p.url}: ${p.reached ? `fenced at ${p.epoch}, ${p.fetched_entries} entries fetched` : `not reached (${p.error})`}`,
            );
          }
          out.line(oldLeaderLine(r.old_leader));
          for (const w of r.wal) out.line(`  WAL ${w.run_id}: last seq ${w.last_seq}`);
          const fw = r.from_wal;
          if (fw.task_files_written || fw.task_files_moved || fw.ledger_rows_written)
            out.line(
              `From the WAL: ${fw.task_files_written} task file(s) written, ${fw.task_files_moved} moved to their state's folder, ${fw.ledger_rows_written} ledger row(s) written.`,
            );
          out.line(`Next: bernstein start --sdd ${r.sdd} --replication-listen HOST:PORT`);
        });
      },
    );
}

/** Whether the old leader learned of the promotion: one that did not may still run and commit. */
function oldLeaderLine(o: { url: string | null; fenced: boolean; error: string | null }): string {
  if (o.fenced) return `Old leader ${o.url}: fenced.`;
  return `Old leader ${o.url ?? "(URL unknown)"}: NOT fenced (${o.error}); if it still runs, stop it by hand.`;
}

/** `dr runbook`: writes a runbook for the current situation into the workspace. */
function registerRunbook(dr: Command): void {
  dr.command("runbook")
    .description("write a DR runbook for the current situation into docs/runbooks/ of this workspace")
    .option("--token-file <file>", `token to ask the live replication process (or env ${TOKEN_ENV})`)
    .option("--tls-ca <file>", "CA to trust when the live process serves https")
    .action(async (flags: { tokenFile?: string; tlsCa?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const st = await gatherStatus(ws, { tokenFile: flags.tokenFile, tlsCa: await caFile(flags.tlsCa) });
      const archive = st.archive;
      const file = await writeRunbook(ws, {
        perspective: st.role,
        policy: (st.policy as "LEADER_ONLY" | "QUORUM" | "ALL" | null) ?? null,
        thresholds: st.thresholds,
        nodes: st.nodes,
        leaderHalted: st.policy_state === "HALTED",
        leaderFenced: st.role === "leader" && st.fenced,
        integrityErrors: st.integrity_error ? [st.integrity_error] : [],
        lastBackup: st.last_backup,
        backupLogProblems: st.backup_log_problems,
        evaluation: st.failover,
        writtenBy: `dr runbook on ${st.role}${st.region ? ` ${st.region}` : ""}`,
        tokenFile: flags.tokenFile,
        // An archive whose lag is known now (running, or stopped with what the store held).
        archive:
          archive && lagIsCurrent(archive)
            ? {
                destination: archive.destination,
                lag_entries: archive.lag_entries,
                lag_seconds: archive.lag_seconds,
                running: archive.running,
                stopped_at: stoppedSince(archive),
              }
            : null,
      });
      out.result(
        { ok: true, runbook: file, decision: st.failover.decision, reasons: st.failover.reasons },
        () => {
          out.line(`Runbook written: ${shown(file)}`);
          out.line(
            `Evaluation: ${st.failover.decision}${st.failover.reasons.length ? ` — ${st.failover.reasons.join("; ")}` : ""}`,
          );
          out.line(
            st.failover.decision === "FAILOVER_RECOMMENDED"
              ? "Act now: follow the runbook's commands."
              : st.failover.decision === "ALERT_ONLY"
                ? "No failover now: look into the alerts; the runbook holds the plan should the leader be lost."
                : "Nothing to do now; the runbook holds the plan should the leader be lost.",
          );
        },
      );
    });
}

export function registerDrReplication(program: Command): void {
  const dr = drGroup(program);
  registerStatus(dr);
  registerPromote(dr);
  registerRunbook(dr);
}
