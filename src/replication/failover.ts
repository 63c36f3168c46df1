/**
 * Failover evaluation and the DR runbook.
 *   FAILOVER_RECOMMENDED: the leader is unreachable from a follower (--unreachable-after consecutive
 *     failures), or more than half the followers are unreachable under QUORUM, or a follower
 *     lags by more than 10 × max_lag_entries;
 *   ALERT_ONLY: something is degraded but a failover would not help (a follower LAGGING or
 *     UNREACHABLE, an integrity error, the leader halted or fenced, a leader contact failing, a
 *     leader out of reach after a clean stop);
 *   NO_ACTION otherwise.
 * FAILOVER_RECOMMENDED writes `docs/runbooks/DR-RUNBOOK-<UTC timestamp>.md` in the workspace.
 */
import path from "node:path";
import { catalogueFolderOf } from "../storage/catalogue.js";
import { durableCreate, durableMkdir } from "../workspace/durable.js";
import { shellWord } from "../workspace/shown-path.js";
import type { Workspace } from "../workspace/layout.js";
import { counted } from "../workspace/counted.js";
import type { AckPolicyName } from "./ack-policy.js";
import type { HealthThresholds } from "./health.js";

export type FailoverDecision = "NO_ACTION" | "ALERT_ONLY" | "FAILOVER_RECOMMENDED";

export interface NodeState {
  name: string;
  role: "leader" | "follower";
  url: string | null;
  /** The node's `.sdd` folder when known (the local node). */
  sdd?: string;
  epoch: number | null;
  wal_position: { run_id: string; seq: number } | null;
  health: string;
  lag_entries: number | null;
  lag_seconds: number | null;
  note?: string;
}

/** The leader's clean stop as a follower holds it: its `orchestrator_stopped` entry. */
export interface LeaderStop {
  run_id: string;
  seq: number;
  /** The entry's own time (ISO 8601). */
  at: string;
  /** Why the run ended (`stopped`, `idle`, `forced`), as the entry says. */
  reason: string | null;
}

export interface FailoverInput {
  perspective: "leader" | "follower";
  policy: AckPolicyName | null;
  thresholds: HealthThresholds;
  /** Follower perspective: consecutive failed contacts with the leader. */
  leaderFailures?: number;
  /** Follower perspective: the leader's newest entry this follower holds is its clean stop. */
  leaderStopped?: LeaderStop | null;
  /** Follower perspective: this follower's process has not reached the leader once. */
  leaderNeverReached?: boolean;
  nodes: NodeState[];
  leaderHalted?: boolean;
  leaderFenced?: boolean;
  integrityErrors?: string[];
  lastBackup?: { location: string; created_at: string; age_seconds: number } | null;
}

export interface FailoverEvaluation {
  decision: FailoverDecision;
  reasons: string[];
}

export function evaluateFailover(i: FailoverInput): FailoverEvaluation {
  const failover: string[] = [];
  const alerts: string[] = [];
  const followers = i.nodes.filter((n) => n.role === "follower");
  const stop = i.perspective === "follower" ? i.leaderStopped : null;
  if (stop && (i.leaderFailures ?? 0) > 0) {
    // A planned stop is no disaster: promoting while the leader is about to come back splits the history.
    alerts.push(leaderStopReason(stop, i.leaderFailures ?? 0));
  } else if (i.perspective === "follower" && (i.leaderFailures ?? 0) >= i.thresholds.maxRetries) {
    failover.push(
      `leader unreachable from this follower (${i.leaderFailures} consecutive failures)` +
        (i.leaderNeverReached
          ? "; not reached since this follower started, and its WAL does not end with the leader's clean stop: it cannot tell whether the leader stopped or was lost"
          : ""),
    );
  } else if ((i.leaderFailures ?? 0) > 0) {
    alerts.push(`${i.leaderFailures} failed contact(s) with the leader`);
  }
  const unreachable = followers.filter((f) => f.health === "UNREACHABLE");
  if (i.policy === "QUORUM" && followers.length > 0 && unreachable.length > followers.length / 2) {
    failover.push(`${unreachable.length} of ${followers.length} followers unreachable under QUORUM`);
  } else if (unreachable.length > 0) {
    alerts.push(`follower(s) unreachable: ${unreachable.map((f) => f.name).join(", ")}`);
  }
  for (const f of followers) {
    if (f.lag_entries !== null && f.lag_entries > 10 * i.thresholds.maxLagEntries) {
      failover.push(
        `follower ${f.name} lags by ${f.lag_entries} entries (> 10 × ${i.thresholds.maxLagEntries})`,
      );
    } else if (f.health === "LAGGING") {
      // An integrity error makes a follower LAGGING whatever its lag (unknown without its process):
      // that error is an alert of its own.
      if (f.lag_entries !== null)
        alerts.push(`follower ${f.name} is LAGGING (${counted(f.lag_entries, "entry", "entries")})`);
      else if (!f.note) alerts.push(`follower ${f.name} is LAGGING (lag unknown)`);
    }
  }
  if (i.leaderHalted) alerts.push("the leader halted: its ack policy is not met");
  if (i.leaderFenced) alerts.push("this leader is fenced by a newer epoch");
  for (const e of i.integrityErrors ?? []) alerts.push(`integrity error: ${e}`);
  if (failover.length > 0) return { decision: "FAILOVER_RECOMMENDED", reasons: [...failover, ...alerts] };
  if (alerts.length > 0) return { decision: "ALERT_ONLY", reasons: alerts };
  return { decision: "NO_ACTION", reasons: [] };
}

/** The reason a follower gives while its leader, stopped cleanly, is out of reach. */
export function leaderStopReason(stop: LeaderStop, failures: number): string {
  return (
    `leader stopped cleanly at ${stop.at}, seq ${stop.seq} of run ${stop.run_id}` +
    `${stop.reason ? ` (${stop.reason})` : ""}, unreachable since (${counted(failures, "failed contact", "failed contacts")}); ` +
    "promote only if it will not come back"
  );
}

export function utcStamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

function fmt(v: number | null | undefined, unit = ""): string {
  return v === null || v === undefined ? "unknown" : `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
}

/** The best follower to promote: reachable, no integrity error, least lag. */
export function bestCandidate(nodes: NodeState[]): NodeState | undefined {
  return nodes
    .filter((n) => n.role === "follower" && n.health !== "UNREACHABLE" && !n.note?.includes("integrity"))
    .sort((a, b) => (a.lag_entries ?? Infinity) - (b.lag_entries ?? Infinity))[0];
}

/** The workspace's WAL archive as `dr status` measures it: a restore source to its newest point. */
export interface RunbookArchive {
  destination: string;
  /** What restoring its newest point would lose now (the archiver's lag). */
  lag_entries: number;
  lag_seconds: number;
  running: boolean;
  /** When it stopped (or was last seen), for one that does not run. */
  stopped_at: string | null;
}

export interface RunbookInput extends FailoverInput {
  evaluation: FailoverEvaluation;
  writtenBy: string;
  tokenFile?: string;
  archive?: RunbookArchive | null;
  /** Lines of `runs/backups.jsonl` that are not rows (describeBackupLogProblem's words). */
  backupLogProblems?: string[];
}

/** What the runbook's sections share: who leads, who to promote, whether to act now. */
interface RunbookPlan {
  leader: NodeState | undefined;
  candidate: NodeState | undefined;
  others: NodeState[];
  /** Only FAILOVER_RECOMMENDED calls for acting now; otherwise the plan is the contingency. */
  actNow: boolean;
}

function situationSection(r: RunbookInput, now: Date): string[] {
  const lines: string[] = [];
  lines.push(`# DR runbook — ${now.toISOString()}`, "");
  lines.push("## Situation", "");
  lines.push(
    `- Evaluation: **${r.evaluation.decision}** (written by ${r.writtenBy}, ${r.perspective} view).`,
  );
  for (const reason of r.evaluation.reasons) lines.push(`- ${reason}`);
  lines.push(
    `- Acknowledgement policy: ${r.policy ?? "unknown"}; LAGGING above ${r.thresholds.maxLagEntries} entries; UNREACHABLE after ${r.thresholds.maxRetries} failures.`,
  );
  if (r.lastBackup) {
    lines.push(
      `- Last good backup: ${r.lastBackup.location} at ${r.lastBackup.created_at} (${fmt(r.lastBackup.age_seconds, " s")} old).`,
    );
  } else {
    lines.push("- Last good backup: none recorded in runs/backups.jsonl.");
  }
  // A row lost to a torn or damaged line may have been the newest backup.
  for (const p of r.backupLogProblems ?? []) lines.push(`- Backup record: ${p}.`);
  if (r.archive) {
    const a = r.archive;
    lines.push(
      `- WAL archive: ${a.destination} (archiver ${a.running ? "running" : `not running since ${a.stopped_at ?? "unknown"}`}; lag ${a.lag_entries} entries, ${fmt(a.lag_seconds, " s")}).`,
    );
  }
  return lines;
}

function nodesSection(r: RunbookInput): string[] {
  const lines: string[] = ["", "## Nodes", ""];
  lines.push("| node | role | epoch | WAL position | health | lag (entries) | lag (s) | url |");
  lines.push("| ---- | ---- | ----- | ------------ | ------ | ------------- | ------- | --- |");
  for (const n of r.nodes) {
    const pos = n.wal_position ? `${n.wal_position.run_id}#${n.wal_position.seq}` : "unknown";
    lines.push(
      `| ${n.name} | ${n.role} | ${n.epoch ?? "unknown"} | ${pos} | ${n.health} | ${fmt(n.lag_entries)} | ${fmt(n.lag_seconds)} | ${n.url ?? "-"} |`,
    );
  }
  return lines;
}

/** The command that re-joins a fenced old leader as a follower of the leader that superseded it. */
function rejoinCommand(r: RunbookInput, leader: NodeState | undefined): string {
  const sdd = leader?.sdd ?? "<this .sdd folder>";
  return `bernstein replicate follow --rebootstrap --leader <NEW_LEADER_URL> --follower-name <NAME> --sdd ${sdd} ${tokenArg(r)}`;
}

/**
 * What a restore of the backup at `location` needs to open it, as a placeholder the reader fills
 * (never a secret in a runbook): without it the command fails as written.
 */
function keyArg(location: string): string {
  if (location.endsWith(".enc")) return " --password-file <PASSWORD_FILE>";
  if (location.endsWith(".age")) return " --identity-file <IDENTITY_FILE>";
  return "";
}

/** Absolute, as `--sdd` is: a runbook's commands work from any folder. */
function tokenArg(r: RunbookInput): string {
  return `--token-file ${r.tokenFile ? path.resolve(r.tokenFile) : "<TOKEN_FILE>"}`;
}

function recommendationSection(r: RunbookInput, { candidate, actNow }: RunbookPlan): string[] {
  const lines: string[] = ["", "## Recommended action", ""];
  if (r.leaderFenced) {
    lines.push(
      "**This leader was superseded by a newer epoch**: another node leads now. Keep it stopped (it must make no decisions) and re-join it as a follower of the new leader with `replicate follow --rebootstrap` (its WAL is kept in `runtime/replication/quarantine-*`).",
    );
    return lines;
  }
  if (!actNow) {
    lines.push(
      r.evaluation.decision === "NO_ACTION"
        ? "**Nothing to do now**: no failover, no restore. Should the leader be lost, this is the plan:"
        : "**No failover now**: look into the alerts above (a failover would not fix them). Should the leader be lost, this is the plan:",
      "",
    );
  }
  if (candidate) {
    lines.push(
      `Promote follower **${candidate.name}** (reachable, least lag). ` +
        (r.archive
          ? "Keep the WAL archive as the fallback: restore its newest point only if the promotion fails its checks."
          : r.lastBackup
            ? "Keep the last backup as the fallback: restore from it only if the promotion fails its checks."
            : "No backup is recorded: take one right after the promotion."),
    );
  } else if (r.archive) {
    lines.push(
      "No follower can be promoted: **restore the WAL archive's newest point** on a new host" +
        (r.lastBackup ? " (the last good backup is the fallback)." : "."),
    );
  } else if (r.lastBackup) {
    lines.push("No follower can be promoted: **restore from the last good backup** on a new host.");
  } else {
    lines.push(
      "No follower can be promoted and no backup is recorded: recover the leader's disk if at all possible.",
    );
  }
  return lines;
}

function commandsSection(r: RunbookInput, { leader, candidate, others, actNow }: RunbookPlan): string[] {
  if (r.leaderFenced)
    return [
      "",
      "## Commands",
      "",
      "```sh",
      `bernstein stop --sdd ${leader?.sdd ?? "<this .sdd folder>"}   # if it still runs`,
      rejoinCommand(r, leader),
      "```",
    ];
  const token = tokenArg(r);
  const sddOf = (n: NodeState): string => n.sdd ?? `<${n.name} .sdd folder>`;
  const newEpoch = Math.max(0, ...r.nodes.map((n) => n.epoch ?? 0)) + 1;
  const lines: string[] = ["", actNow ? "## Commands" : "## Commands (only if the leader is lost)", ""];
  lines.push("```sh");
  if (leader) {
    lines.push(
      `# 1. Make sure the old leader (${leader.name}) makes no decisions: stop it if it still runs.`,
    );
    lines.push(`bernstein stop --sdd ${sddOf(leader)}   # on the old leader's host, if reachable`);
  }
  if (candidate) {
    const peerArgs = others
      .filter((o) => o.url)
      .map((o) => `--peer ${o.url}`)
      .join(" ");
    lines.push(
      `# 2. Promote ${candidate.name}: gathers the newest entries from its peers, fences them, raises the epoch to ${newEpoch}.`,
    );
    lines.push(`bernstein dr promote --sdd ${sddOf(candidate)} ${token}${peerArgs ? " " + peerArgs : ""}`);
    lines.push(`# 3. Start the new leader with replication.`);
    lines.push(
      `bernstein start --sdd ${sddOf(candidate)} --replication-listen HOST:PORT --ack-policy ${r.policy ?? "<the old leader's policy>"} ${token}`,
    );
    for (const o of others) {
      lines.push(`# 4. Re-point follower ${o.name} at the new leader.`);
      lines.push(
        `bernstein replicate follow --leader <NEW_LEADER_URL> --follower-name ${o.name} --sdd ${sddOf(o)} ${token}`,
      );
    }
  }
  if (r.archive) {
    lines.push(
      `# Restore path (if no follower can be promoted): the WAL archive's newest point, every hash checked.`,
      `# An S3-compatible store other than AWS: add --endpoint URL. An encrypted archive: --password-file F or --identity-file F.`,
    );
    lines.push(`bernstein dr restore --from ${r.archive.destination} --latest --sdd <NEW_HOST_SDD>`);
    lines.push(`bernstein start --sdd <NEW_HOST_SDD>`);
  }
  if (r.lastBackup) {
    lines.push(
      r.archive
        ? `# Restore path if the archive cannot be read: the last backup.`
        : `# Restore path (if no follower can be promoted):`,
    );
    lines.push(
      `bernstein dr restore --from ${r.lastBackup.location}${keyArg(r.lastBackup.location)} --sdd <NEW_HOST_SDD>`,
    );
    lines.push(`bernstein start --sdd <NEW_HOST_SDD>`);
  }
  lines.push("```");
  return lines;
}

function dataLossSection(r: RunbookInput, { candidate, actNow }: RunbookPlan): string[] {
  if (r.leaderFenced)
    return [
      "",
      "## Estimated data loss",
      "",
      "- What this node wrote that no follower held is not in the new leader's history; re-joining keeps it in the quarantine.",
    ];
  const lines: string[] = [
    "",
    actNow ? "## Estimated data loss" : "## Estimated data loss (if the leader is lost)",
    "",
  ];
  if (candidate) {
    lines.push(
      `- Promoting ${candidate.name}: ${fmt(candidate.lag_entries)} entries, ${fmt(candidate.lag_seconds, " s")} (its lag; under QUORUM/ALL no acknowledged decision is lost when the promotion reaches its peers).`,
    );
  }
  if (r.archive)
    lines.push(
      `- Restoring the WAL archive's newest point: ${r.archive.lag_entries} entries, ${fmt(r.archive.lag_seconds, " s")} (its lag now).`,
    );
  if (r.lastBackup)
    lines.push(`- Restoring the last backup: everything after it, ${fmt(r.lastBackup.age_seconds, " s")}.`);
  if (!candidate && !r.lastBackup && !r.archive)
    lines.push("- Unknown: no follower, no WAL archive and no backup.");
  return lines;
}

/**
 * Taking a fresh backup where the last one went: its catalogue location when it was a catalogue
 * backup (`bernstein-backup-<UTC>...`), else a destination the user fills in.
 */
function freshBackupStep(r: RunbookInput): string {
  const location = r.lastBackup?.location;
  const dir = location === undefined ? undefined : catalogueFolderOf(location);
  let command = "`bernstein dr backup --to-dir <LOCATION>` or `--to <PATH>`";
  if (location !== undefined && dir !== undefined)
    command = `\`bernstein dr backup --to-dir ${shellWord(dir)}${keyFlag(location)}\`, where the last one went`;
  return `Take a fresh backup (${command}) and a restore drill (\`bernstein dr drill\`).`;
}

/** The flag a fresh backup like the one at `location` needs to be encrypted the same way. */
function keyFlag(location: string): string {
  if (location.endsWith(".enc")) return " --encrypt --password-file <PASSWORD_FILE>";
  if (location.endsWith(".age")) return " --recipient <RECIPIENT>";
  return "";
}

function postRecoveryChecklist(r: RunbookInput): string[] {
  return [
    "`bernstein dr status --json` on the new leader: role leader, the new epoch, followers HEALTHY.",
    "`bernstein doctor` passes on the new leader.",
    "WAL and audit chains verify (`bernstein wal verify`, `bernstein audit verify`).",
    "`bernstein start` completes the backlog; `bernstein status` shows the expected task counts.",
    "The old leader stays stopped; it re-joins only as a follower (`replicate follow --rebootstrap`).",
    freshBackupStep(r),
    "If the old leader was archived: archive the new one (`bernstein start --archive-to` the same location starts a generation of its own; the old one stays restorable).",
    "Re-enable external triggers (cron, CI, webhooks) paused during the failover.",
  ];
}

export function renderRunbook(r: RunbookInput, now = new Date()): string {
  const candidate = bestCandidate(r.nodes);
  const plan: RunbookPlan = {
    leader: r.nodes.find((n) => n.role === "leader"),
    candidate,
    others: r.nodes.filter((n) => n.role === "follower" && n !== candidate),
    actNow: r.evaluation.decision === "FAILOVER_RECOMMENDED",
  };
  const lines = [
    ...situationSection(r, now),
    ...nodesSection(r),
    ...recommendationSection(r, plan),
    ...commandsSection(r, plan),
    ...dataLossSection(r, plan),
    "",
    "## Post-recovery checklist",
    "",
    ...postRecoveryChecklist(r).map((item) => `- [ ] ${item}`),
  ];
  return lines.join("\n") + "\n";
}

/** Writes a runbook into `<workspace>/docs/runbooks/` and returns its path. */
export async function writeRunbook(ws: Workspace, r: RunbookInput, now = new Date()): Promise<string> {
  const dir = ws.runbooksDir;
  await durableMkdir(dir);
  const text = renderRunbook(r, now);
  // Names are to the second: a second runbook of the same second gets a suffix, never the
  // first's name (created exclusively, so two writers at once cannot take the same one).
  for (let n = 1; ; n++) {
    const file = path.join(dir, `DR-RUNBOOK-${utcStamp(now)}${n === 1 ? "" : `-${n}`}.md`);
    try {
      await durableCreate(file, text);
      return file;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}
