/**
 * `bernstein doctor`: read-only health checks of a workspace (also run by the DR drill on a
 * restored copy through `runDoctor`). Each check: {name, ok, verdict, detail, fix}; a warning
 * (verdict "warn") is not a pass and not a failure: `ok` is false only for failures, and the command
 * exits 1 when any check fails.
 */
import { stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { loadAuditKey } from "../audit/key.js";
import { auditBreakSummary, verifyAuditLog } from "../audit/verify.js";
import { formatUsd, ledgerTotals } from "../ledger/cost-ledger.js";
import { listRuns, readWalEntries } from "../wal/reader.js";
import { readClosedMarker } from "../wal/recovery.js";
import { verifyRun } from "../wal/torn-tail.js";
import { findWalRollbacks } from "../dr/rollback.js";
import { Workspace, WORKSPACE_DIRS } from "../workspace/layout.js";
import { shown } from "../workspace/shown-path.js";
import { describeHolder, readLock } from "../workspace/lock.js";
import { newestCheckpointCheck } from "./checkpointing.js";
import { epochFile, readStanding, roleFile, type Standing } from "../workspace/replication-role.js";
import { ledgerDrift, ledgerShort, walDrift, type LedgerMismatch } from "./materialize.js";
import { DEFAULT_STALE_AFTER_MS, staleAfterFromEnv } from "../state/replay.js";
import { findCycles, scanBacklog, type BacklogScan } from "./tasks.js";
import { agentNameFor, findExecutable, loadAgentsConfig, unrunnable, type AgentsConfig } from "./agents.js";
import { UserError } from "../errors/errors.js";
import type { OrchestratorState } from "../state/reducer.js";
import { taskView, type TaskView } from "./view.js";
import { loadState } from "../checkpoint/load-state.js";
import { versionCheck } from "./restored.js";
import type { DoctorCheck, Verdict } from "./doctor-check.js";
import { gitMergeChecks } from "./git/merge-checks.js";
import { findingWording } from "../dr/manifest.js";

export interface DoctorOptions {
  /** Audit key file (else the default resolution; never created). */
  keyFile?: string;
  env?: NodeJS.ProcessEnv;
}

/** A run's WAL file, as `listRuns` lists it. */
type WalRun = { run_id: string; file: string };

function check(name: string, verdict: Verdict, detail: string, fix = ""): DoctorCheck {
  return { name, ok: verdict !== "fail", verdict, detail, fix };
}

const isDir = (p: string) =>
  stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );

const isFile = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/** DIR may hold `.sdd/` or be the state folder itself (the drill restores to any path). */
export async function resolveDoctorTarget(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  if (await isDir(path.join(abs, ".sdd"))) return path.join(abs, ".sdd");
  return abs;
}

export async function runDoctor(
  sddDir: string,
  opts: DoctorOptions = {},
): Promise<{ checks: DoctorCheck[] }> {
  const ws = new Workspace(sddDir);
  const checks: DoctorCheck[] = [];
  const guard = async (name: string, fix: string, fn: () => Promise<DoctorCheck | DoctorCheck[]>) => {
    try {
      const r = await fn();
      checks.push(...(Array.isArray(r) ? r : [r]));
    } catch (err) {
      checks.push(check(name, "fail", `could not check: ${(err as Error).message}`, fix));
    }
  };

  // 1. layout
  if (!(await isDir(ws.root)) || !(await isDir(ws.runtimeDir))) {
    checks.push(
      check(
        "layout",
        "fail",
        `${ws.shownRoot} is not a bernstein workspace (no runtime/)`,
        "point --workspace at the folder holding .sdd/, or run `bernstein init`",
      ),
    );
    return { checks };
  }
  await guard("layout", "bernstein init", () => layoutCheck(ws));
  // 2. lock
  await guard("lock", "", () => lockCheck(ws));
  // 3. every WAL chain
  const runs = await listRuns(ws).catch(() => []);
  await guard("wal", "bernstein wal verify", () => walCheck(ws, runs));
  // 4. audit chain (needs the key; a missing key is a warning, never a pass)
  await guard("audit", "bernstein audit verify", () => auditCheck(ws, opts));
  // 5. newest checkpoint valid and consistent with the WAL
  await guard("checkpoint", "bernstein checkpoint list", async () => newestCheckpointCheck(ws));
  // 6-7. backlog files parse; no task in two folders; no dependency cycle among the tasks to run.
  // The state is read before the folders and the WAL's claims after them, so that a running
  // orchestrator's moves cannot fail check 9: a task the state knows had its file before (adoption
  // follows the file), and a file in claimed/ had its claim intent written before it moved there.
  let state: OrchestratorState | undefined;
  let stateError: unknown;
  try {
    state = (await loadState(ws)).state;
  } catch (err) {
    stateError = err;
  }
  const closedBefore = await closedRuns(ws);
  const scan = await scanBacklog(ws);
  checks.push(...backlogChecks(ws, scan));
  // 8. the replication role: a follower or a fenced node is refused by `start`
  const standing = await readStanding(ws).catch(() => undefined);
  await guard("replication", "bernstein dr status", () => replicationCheck(ws, standing));
  // 9. every claimed task has its claim in the WAL; the folders agree with the state
  if (stateError !== undefined) {
    checks.push(
      check(
        "state",
        "fail",
        `state could not be loaded: ${(stateError as Error).message}`,
        "bernstein wal verify; bernstein checkpoint list",
      ),
    );
  }
  if (state) {
    // A follower's backlog is its base snapshot's: promotion writes the rest from the WAL.
    const follower = standing?.kind === "follower";
    checks.push(...(await stateChecks(ws, state, scan, closedBefore, standing)));
    // 10. every ledger row is the usage the WAL recorded for its agent, and every usage has its row
    const walFailed = checks.some((c) => c.name === "wal" && c.verdict === "fail");
    await guard("ledger", "bernstein start", () => ledgerCheck(ws, state, follower, walFailed));
  }
  // 11. agents.yaml loads, and the tasks still to run have an agent that can run them here
  await guard("agents", "", () => agentsCheck(ws, scan));
  // 12. tool version vs the manifest of a restored workspace
  await guard("version", "", async () => versionCheck(ws.root));
  // 13. the repository the tasks merge into (docs/orchestrator.md "Worktrees and merges")
  await guard("git-merges", "", async () => gitMergeChecks(ws));
  return { checks };
}

/**
 * Whether `start` may run here: a follower passes (it follows; `dr promote` makes it lead), a
 * fenced node fails (`start` refuses it: a newer epoch leads elsewhere).
 */
async function replicationCheck(ws: Workspace, standing: Standing | undefined): Promise<DoctorCheck> {
  // Unreadable role or epoch file: read again for its own error.
  const s = standing ?? (await readStanding(ws));
  switch (s.kind) {
    case "fenced":
      return check(
        "replication",
        "fail",
        `fenced: superseded by epoch ${s.superseded_by}${s.reason ? ` (${s.reason})` : ""}, this node's epoch ${s.epoch} must not lead; \`start\` refuses it`,
        "re-join as a follower: `bernstein replicate follow --leader NEW_LEADER_URL --rebootstrap`",
      );
    case "follower":
      return check(
        "replication",
        "pass",
        `follower of ${s.leader_url ?? "an unknown leader"} at epoch ${s.epoch}: \`start\` refuses it; \`bernstein dr promote\` makes it the leader`,
      );
    default: {
      const replicated = (await isFile(roleFile(ws))) || (await isFile(epochFile(ws)));
      return check(
        "replication",
        "pass",
        replicated ? `leader at epoch ${s.epoch}` : "not replicated (no role or epoch file)",
      );
    }
  }
}

async function layoutCheck(ws: Workspace): Promise<DoctorCheck> {
  const missing: string[] = [];
  for (const rel of WORKSPACE_DIRS) if (!(await isDir(ws.p(rel)))) missing.push(rel);
  // A workspace restored from the Python original lacks our extra folders: they are created on demand.
  const essential = missing.filter((m) => m === "runtime/wal" || m === "backlog/open");
  if (essential.length)
    return check(
      "layout",
      "fail",
      `missing folders: ${missing.join(", ")}`,
      "`bernstein init` creates them (idempotent)",
    );
  if (missing.length)
    return check(
      "layout",
      "warn",
      `missing folders (created on demand): ${missing.join(", ")}`,
      "`bernstein init` creates them (idempotent)",
    );
  return check("layout", "pass", `all ${WORKSPACE_DIRS.length} workspace folders present`);
}

async function lockCheck(ws: Workspace): Promise<DoctorCheck> {
  const l = await readLock(ws);
  switch (l.state) {
    case "free":
      return check("lock", "pass", "no lock held (no orchestrator running)");
    case "held":
      return check("lock", "pass", `held by a live process: ${describeHolder(l.info)}`);
    case "stale":
      return check(
        "lock",
        "warn",
        `stale lock of ${describeHolder(l.info)}: ${l.reason}`,
        "the next `bernstein start` takes it over",
      );
    default:
      return check(
        "lock",
        "fail",
        `lock file unreadable: ${l.reason}`,
        `remove ${ws.lockFile} if no orchestrator is running`,
      );
  }
}

async function walCheck(ws: Workspace, runs: WalRun[]): Promise<DoctorCheck> {
  if (!runs.length && !(await findWalRollbacks(ws)).rollbacks.length)
    return check("wal", "pass", "no WAL runs yet");
  const bad: string[] = [];
  const torn: string[] = [];
  const writing: string[] = [];
  let entries = 0;
  for (const run of runs) {
    const { result: r, torn_tail } = await verifyRun(ws, run);
    entries += torn_tail ? torn_tail.line - 1 : r.entries;
    if (r.ok) continue;
    const e = r.errors[0];
    const where = torn_tail && `${run.run_id} (${torn_tail.bytes} bytes after seq ${torn_tail.after_seq})`;
    if (torn_tail?.orchestrator_running) writing.push(where!);
    else if (torn_tail) torn.push(where!);
    else bad.push(`${run.run_id} at seq ${e.seq}, line ${e.line}: ${e.message}`);
  }
  const { rollbacks } = await findWalRollbacks(ws);
  const labelOf = (kind: string) => (kind === "repeated_run" ? "repeated run" : findingWording(kind));
  const problems = [...(bad.length ? [`broken chain: ${bad.join("; ")}`] : [])];
  for (const label of ["rolled back", "damaged", "repeated run"]) {
    const found = rollbacks.filter((r) => labelOf(r.kind) === label);
    if (found.length)
      problems.push(`${label}: ${found.map((r) => `run ${r.run_id}: ${r.message}`).join("; ")}`);
  }
  if (problems.length)
    return check(
      "wal",
      "fail",
      problems.join("; "),
      "inspect with `bernstein wal verify --run RUN`; restore a good copy with `bernstein dr restore`",
    );
  if (torn.length)
    return check(
      "wal",
      "warn",
      `${runs.length} run(s), ${entries} entries; torn tail (a crash) in ${torn.join(", ")}`,
      "`bernstein start` cuts it back to the last valid entry",
    );
  // The running orchestrator's line caught between its write and its newline: nothing to do.
  const note = writing.length ? `; a line being written in ${writing.join(", ")}` : "";
  return check("wal", "pass", `${runs.length} run(s), ${entries} entries, every chain intact${note}`);
}

async function auditCheck(ws: Workspace, opts: DoctorOptions): Promise<DoctorCheck> {
  let key;
  try {
    key = await loadAuditKey({ create: false, keyFile: opts.keyFile, env: opts.env });
  } catch (err) {
    return check(
      "audit",
      "warn",
      `audit chain not verified: ${(err as Error).message}`,
      "pass --key-file FILE (restore the key from your secrets store)",
    );
  }
  const r = await verifyAuditLog(ws, key);
  if (!r.ok) {
    return check(
      "audit",
      "fail",
      auditBreakSummary(r, `the audit key ${shown(key.path)}`, shown),
      r.signed_with_another_key
        ? "give the key that signed it: --key-file FILE or $BERNSTEIN_AUDIT_KEY_PATH"
        : "bernstein audit verify --key-file FILE; restore with `bernstein dr restore`",
    );
  }
  return check("audit", "pass", `${r.entries} entries in ${r.files.length} file(s), chain intact`);
}

/** "task T-1", "tasks T-1, T-2, T-3, 5 more". */
function someTasks(ids: string[]): string {
  const more = ids.length > 3 ? `, ${ids.length - 3} more` : "";
  return `task${ids.length > 1 ? "s" : ""} ${ids.slice(0, 3).join(", ")}${more}`;
}

/**
 * What `start` would make of the tasks still to run: a file it refuses (exit 2) fails; tasks no
 * configured agent can run, or whose agent's binary is not on PATH here (a restore onto another
 * host), warn: `start` fails each of them for good instead of running it.
 */
async function agentsCheck(ws: Workspace, scan: BacklogScan): Promise<DoctorCheck> {
  let cfg: AgentsConfig;
  try {
    cfg = await loadAgentsConfig(ws);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    return check(
      "agents",
      "fail",
      err.message,
      'fix the named key: until then `start` and `task add` refuse to run (docs/orchestrator.md, "Agents")',
    );
  }
  const from = cfg.source === "built-in" ? "the built-in agents" : shown(cfg.file);
  const toRun = scan.tasks.filter((t) => t.state === "open" || t.state === "claimed");
  // Grouped (by reason, by binary): a backlog of hundreds of such tasks is still one short line.
  const refused = new Map<string, { fix: string; ids: string[] }>();
  const tasksOfBinary = new Map<string, string[]>();
  for (const { spec } of toRun) {
    const why = unrunnable(cfg, spec);
    if (why) {
      const group = refused.get(why.reason) ?? { fix: why.fix, ids: [] };
      group.ids.push(spec.id);
      refused.set(why.reason, group);
      continue;
    }
    const agent = cfg.agents[agentNameFor(cfg, spec)]!;
    if (agent.adapter !== "template") continue;
    const bin = agent.command[0]!;
    tasksOfBinary.set(bin, [...(tasksOfBinary.get(bin) ?? []), spec.id]);
  }
  const missing: string[] = [];
  for (const [bin, ids] of tasksOfBinary)
    if (!(await findExecutable(bin))) missing.push(`${bin} (${someTasks(ids)})`);
  const refusedCount = [...refused.values()].reduce((n, g) => n + g.ids.length, 0);
  const problems = [
    ...(refusedCount
      ? [
          `no agent can run ${refusedCount} task(s): ${[...refused].map(([reason, g]) => `${reason} (${someTasks(g.ids)})`).join("; ")}`,
        ]
      : []),
    ...(missing.length ? [`not on PATH: ${missing.join(", ")}`] : []),
  ];
  const fixes = [...new Set([...refused.values()].map((g) => g.fix))];
  if (problems.length)
    return check(
      "agents",
      "warn",
      `${from}: ${problems.join("; ")}`,
      [
        ...fixes,
        ...(missing.length ? ["install those CLIs here, or change the agents of those tasks"] : []),
      ].join("; ") + " (`start` fails each of these tasks for good)",
    );
  const tasks = toRun.length
    ? `each of the ${toRun.length} task(s) to run has its agent here`
    : "no task to run";
  return check("agents", "pass", `${from} loaded (default agent: ${cfg.defaultAgent}); ${tasks}`);
}

function backlogChecks(ws: Workspace, scan: BacklogScan): DoctorCheck[] {
  return [
    scan.malformed.length
      ? check(
          "backlog",
          "fail",
          `${scan.malformed.length} malformed task file(s): ${scan.malformed.map((m) => m.error).join("; ")}`,
          "fix or move the named files (they are left in place, never deleted)",
        )
      : check("backlog", "pass", `${scan.tasks.length} task file(s) parse`),
    scan.duplicates.size
      ? check(
          "backlog_unique",
          "fail",
          [...scan.duplicates]
            .map(([id, fs]) => `${id} in ${fs.map((f) => path.relative(ws.root, f.file)).join(" and ")}`)
            .join("; "),
          "keep the copy in the folder `bernstein status` expects and move the other out of backlog/",
        )
      : check("backlog_unique", "pass", "no task is in two folders"),
    dependenciesCheck(scan),
  ];
}

/**
 * Open tasks whose dependencies wait on each other (hand-written files: `task add` refuses
 * a cycle): `start` names them as unable to run and never runs them, as it does a task whose
 * dependency failed — a warning, like the tasks the agents check finds `start` cannot run.
 */
function dependenciesCheck(scan: BacklogScan): DoctorCheck {
  const graph = new Map<string, readonly string[]>();
  // Open tasks only: a claimed one finishes, and then a task waiting on it can run.
  for (const t of scan.tasks) if (t.state === "open") graph.set(t.spec.id, t.spec.depends_on);
  const cycles = findCycles(graph);
  if (!cycles.length) return check("dependencies", "pass", "no dependency cycle among the open tasks");
  return check(
    "dependencies",
    "warn",
    `${cycles.length} dependency cycle(s), their tasks can never run: ${cycles.map((c) => c.join(" -> ")).join("; ")}`,
    "remove a dependency of each cycle from its task file (`start` names these tasks as unable to run)",
  );
}

/**
 * claims, tasks_from_wal, folders: the backlog against the state (checkpoint + WAL), `state` read
 * before `scan` and the WAL's claims after it (see runDoctor).
 */
async function stateChecks(
  ws: Workspace,
  state: OrchestratorState,
  scan: BacklogScan,
  closedBefore: ReadonlySet<string>,
  standing: Standing | undefined,
): Promise<DoctorCheck[]> {
  const follower = standing?.kind === "follower";
  const claimedFiles = scan.tasks.filter((t) => t.state === "claimed");
  const intents = await claimIntents(ws, closedBefore);
  const unclaimed = claimedFiles.filter(
    (t) => taskView(state, t.spec.id)?.state !== "claimed" && !intents.has(t.spec.id),
  );
  const drift = await walDrift(ws, state, scan);
  let misplaced = drift.misplaced;
  if (misplaced.length) {
    // A move since the state was read (a running orchestrator's) is no drift: it is one only if
    // the state read after the folders disagrees with them as well.
    const after = await loadState(ws).catch(() => undefined);
    if (after) {
      const still = new Set(
        (await walDrift(ws, after.state, scan, { ledger: false })).misplaced.map((m) => m.id),
      );
      misplaced = misplaced.filter((m) => still.has(m.id));
    }
  }
  const mismatched = misplaced.map((m) => `${m.id} (file in ${m.folder}, state ${m.state})`);
  return [
    unclaimed.length
      ? check(
          "claims",
          "fail",
          `claimed without a claim in the WAL: ${unclaimed.map((t) => t.spec.id).join(", ")}`,
          "move the files back to backlog/open (the orchestrator re-adopts them)",
        )
      : check("claims", "pass", `${claimedFiles.length} claimed task(s), each with its claim in the WAL`),
    tasksFromWalCheck(drift.missing, follower),
    mismatched.length
      ? check(
          "folders",
          "warn",
          `folders behind the WAL: ${mismatched.join(", ")}`,
          follower
            ? "`bernstein dr promote` moves them (a follower's folders are its base snapshot's)"
            : standing?.kind === "fenced"
              ? "none here: re-join as a follower (see the replication check)"
              : "`bernstein start` moves them (a crash between a rename and its commit)",
        )
      : check("folders", "pass", "every task file is in the folder of its state"),
  ];
}

function tasksFromWalCheck(missingTasks: TaskView[], follower: boolean): DoctorCheck {
  const missing = missingTasks.map((t) => `${t.id} (${t.state})`);
  const listed = missing.length > 20 ? `${missing.slice(0, 20).join(", ")}, ...` : missing.join(", ");
  if (!missing.length) return check("tasks_from_wal", "pass", "every task the WAL created has its task file");
  if (follower)
    return check(
      "tasks_from_wal",
      "pass",
      `follower: ${missing.length} task(s) of the WAL have no file yet; \`bernstein dr promote\` writes them from the WAL: ${listed}`,
    );
  return check(
    "tasks_from_wal",
    "fail",
    `${missing.length} task(s) created in the WAL have no task file (status under-counts them): ${listed}`,
    "`bernstein start` writes them from their task_created entries (every field is in the WAL)",
  );
}

/** What to do about each kind of ledger line that disagrees with the WAL: true for that cause. */
const LEDGER_FIXES: Record<LedgerMismatch["kind"], string> = {
  altered:
    "the WAL is the hash-chained record and `start` never rewrites a row: put the WAL's values back on the named line, or restore the ledger from a backup (`bernstein dr restore`)",
  duplicate: "remove the later row of that usage (one row per usage; every report sums it twice)",
  uncommitted:
    "`bernstein start` completes it: it replays the completion's intent, whose commit matches the row",
  stale:
    "`bernstein start` reports that intent as stale and does not complete it, so the row stays ahead of the WAL: start with `BERNSTEIN_REPLAY_STALE_AFTER` (seconds) above its age to have it replayed",
  unknown:
    "remove the named line if it is a hand edit or a row of another workspace; if the WAL lost entries, the wal check says so",
  unreadable: "remove the named line: it is not counted",
};

/**
 * The staleness window the next `start` replays intents within (replayWal). A bad
 * `$BERNSTEIN_REPLAY_STALE_AFTER` refuses that start with its own message; the doctor still
 * reports, measuring against the default window.
 */
function replayStaleAfterMs(): number {
  try {
    return staleAfterFromEnv() ?? DEFAULT_STALE_AFTER_MS;
  } catch {
    return DEFAULT_STALE_AFTER_MS;
  }
}

/** Reads of the ledger and the WAL a failing ledger check makes beside a running orchestrator. */
const LEDGER_READS_WHILE_RUNNING = 5;

/**
 * A running orchestrator appends a usage's row between its intent and its commit: read between
 * the two, a row has no commit yet (or no WAL entry at all). While the lock is held by a live
 * process, a failing comparison is therefore made again, a little later, before it is reported.
 */
async function ledgerCheck(
  ws: Workspace,
  state: OrchestratorState,
  follower: boolean,
  walFailed: boolean,
): Promise<DoctorCheck> {
  let result = await ledgerCheckOnce(ws, state, follower, walFailed);
  for (let read = 1; read < LEDGER_READS_WHILE_RUNNING && result.verdict !== "pass"; read++) {
    if ((await readLock(ws)).state !== "held") break;
    await sleep(20 * read);
    result = await ledgerCheckOnce(ws, state, follower, walFailed);
  }
  return result;
}

/**
 * Each ledger row against the usage its commit recorded in the WAL (where the state's cost comes
 * from): the first line that differs is named with its task, field and both values.
 */
async function ledgerCheckOnce(
  ws: Workspace,
  state: OrchestratorState,
  follower: boolean,
  walFailed: boolean,
): Promise<DoctorCheck> {
  const drift = await ledgerDrift(ws, { staleAfterMs: replayStaleAfterMs() });
  const n = drift.missing_count;
  const missing = drift.missing
    .slice(0, 3)
    .map((u) => `agent ${u.agent_id} (task ${u.task_id}, run ${u.run_id} seq ${u.seq})`);
  const missingLine = n
    ? `${n} usage(s) in the WAL have no row: ${missing.join(", ")}${n > 3 ? `, ${n - 3} more` : ""}`
    : "";
  const first = drift.mismatches[0];
  const mismatchLine = first
    ? `${first.message}${drift.mismatch_count > 1 ? `; ${drift.mismatch_count - 1} more line(s) differ` : ""}`
    : "";
  const onlyUnreadable = [...drift.mismatch_kinds].every((k) => k === "unreadable");
  // What a crash leaves and the next start repairs is a warning (a follower's start refuses it).
  const onlyWarnings = [...drift.mismatch_kinds].every(
    (k) => k === "unreadable" || (k === "uncommitted" && !follower),
  );
  const sums = `${drift.rows} row(s), ${formatUsd(drift.cost_usd)}`;
  if (follower && drift.missing_count && onlyUnreadable)
    return check(
      "ledger",
      drift.mismatch_count ? "warn" : "pass",
      `follower: ${[missingLine, mismatchLine].filter(Boolean).join("; ")}; \`bernstein dr promote\` writes the missing rows from the WAL`,
      drift.mismatch_count ? LEDGER_FIXES.unreadable : "",
    );
  if (drift.missing_count || !onlyWarnings) {
    const fixes = [...drift.mismatch_kinds].map((k) => LEDGER_FIXES[k]);
    if (drift.missing_count)
      fixes.push(
        ledgerShort(state, await ledgerTotals(ws))
          ? "`bernstein start` writes the missing rows from the WAL"
          : "`bernstein start` looks for missing rows only when the ledger sums to less than the WAL: correct the lines named first",
      );
    // A broken WAL (a repeated run, a rollback) is what the rows are compared with: mend it first.
    if (walFailed)
      fixes.splice(
        0,
        fixes.length,
        "the wal check fails: `start` refuses this workspace until the WAL is whole (see that check's fix), and only then do the rows compare with it",
      );
    return check("ledger", "fail", [mismatchLine, missingLine].filter(Boolean).join("; "), fixes.join("; "));
  }
  if (drift.mismatch_count)
    return check(
      "ledger",
      "warn",
      `${sums}${onlyUnreadable ? ", each as the WAL recorded it" : ""}; ${mismatchLine}`,
      [...drift.mismatch_kinds].map((k) => LEDGER_FIXES[k]).join("; "),
    );
  return check("ledger", "pass", `${sums}, each as the WAL recorded it`);
}

/** The runs closed now: the runs a later claim cannot be in. */
async function closedRuns(ws: Workspace): Promise<Set<string>> {
  const closed = new Set<string>();
  for (const run of await listRuns(ws).catch(() => []))
    if (await readClosedMarker(ws, run.run_id).catch(() => null)) closed.add(run.run_id);
  return closed;
}

/**
 * Task ids with a task_claimed intent in a run that was not closed before the folders were read (a
 * claim in flight at a crash, or a running orchestrator's), the runs listed now: a run that began
 * or closed since then holds claims the folders may show.
 * The chains are the wal check's to verify (and a break its to report): only the claims are read.
 */
async function claimIntents(ws: Workspace, closedBefore: ReadonlySet<string>): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const run of await listRuns(ws).catch(() => [])) {
    if (closedBefore.has(run.run_id)) continue;
    try {
      for await (const { entry } of readWalEntries(run.file, {
        verify: false,
        decisionTypes: ["task_claimed"],
      })) {
        if (!entry.committed && typeof entry.inputs.task_id === "string") ids.add(entry.inputs.task_id);
      }
    } catch {
      // an unreadable file or line is the wal check's to report
    }
  }
  return ids;
}

export function doctorExitCode(checks: DoctorCheck[]): number {
  return checks.some((c) => c.verdict === "fail") ? 1 : 0;
}
