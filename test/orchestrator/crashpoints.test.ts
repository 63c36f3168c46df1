import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { copyFile, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { runDoctor } from "../../src/orchestrator/doctor.js";
import { loadState } from "../../src/checkpoint/load-state.js";
import { runBackupJob } from "../../src/dr/backup-job.js";
import { restoreFromFile } from "../../src/dr/restore.js";
import { totalCost } from "../../src/orchestrator/view.js";
import { initWorkspace, openWorkspace, Workspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir, withEnv } from "../helpers.js";

/**
 * Deterministic crashes: the orchestrator SIGKILLs itself (BERNSTEIN_CRASH_AT) at a chosen point of
 * a chosen decision — between intent and action, between action and commit, after the commit.
 * Each crashed workspace is then recovered twice:
 *  1. a plain restart must finish the backlog with every command run exactly once;
 *  2. a `dr backup` of the crashed workspace, restored into another folder, must start there,
 *     replay without a failure and finish the backlog, never re-running a task the backup holds
 *     as done.
 * Both must leave no run open (every previous run replayed and closed) and a clean doctor.
 *
 * The first crash point backs up with `dr backup`, checks the restart with the CLI's `status`
 * and `doctor` and restores with `dr restore`; the others run the same code in-process (it does
 * not depend on where the crash happened, only what it reads does), without four more CLI
 * start-ups each.
 */
const POINTS = [
  "task_created:after_action",
  "task_claimed:after_action",
  "task_spawn_confirmed:before_action",
  "task_spawn_confirmed:after_action",
  "task_spawn_confirmed:after_commit",
  "task_completed:before_action",
  "task_completed:after_action",
  "task_failed:after_action",
  "task_retry:after_action",
];

const X_TASKS = ["x1", "x2", "x3"];

/** Runs whose WAL has no closed marker (the replay left them open). */
async function openRuns(sdd: string): Promise<string[]> {
  const names = await readdir(path.join(sdd, "runtime", "wal"));
  return names
    .filter((n) => n.endsWith(".wal.jsonl"))
    .map((n) => n.slice(0, -".wal.jsonl".length))
    .filter((run) => !names.includes(`${run}.wal.closed`));
}

/** What `read` returns, or "" when the process it reads about is gone (or not ours to read). */
function orEmpty(read: () => string): string {
  try {
    return read();
  } catch {
    return "";
  }
}

/**
 * Waits until no process works for the crashed orchestrator any more: its agents' wrappers (their
 * argv names the workspace) and commands (their cwd is the project folder) run on after the
 * SIGKILL. A backup taken while they write would hold whatever half of their work had landed.
 */
async function waitForAgentsGone(dir: string, sdd: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const busy: string[] = [];
    // Synchronous reads: a pass over every process costs a fifth of the CPU it takes through
    // promises (two reads each, a hundred processes or more), and it runs every 25 ms.
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
      const cmdline = orEmpty(() => readFileSync(`/proc/${pid}/cmdline`, "utf8"));
      const cwd = orEmpty(() => readlinkSync(`/proc/${pid}/cwd`));
      if (cmdline.includes(sdd) || cwd === dir) busy.push(pid);
    }
    if (busy.length === 0) return;
    if (Date.now() > deadline) throw new Error(`agents of the crashed run still running: ${busy.join(", ")}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function resultLines(dir: string): Promise<string[]> {
  const text = await readFile(path.join(dir, "results.txt"), "utf8").catch(() => "");
  return text.split("\n").filter(Boolean).sort();
}

/**
 * What every recovered workspace must show: the backlog done, no replay failure, no run left open,
 * one ledger row, the cost in the state, a clean doctor (WAL chains, audit chain, ledger = state).
 * The restored copy, and the restart after every crash point but the first, are checked
 * in-process (the same code as `status`/`doctor`, without two more CLI start-ups each).
 */
async function assertFinished(
  sdd: string,
  started: { code: number | null; stdout: string; stderr: string },
  env: Record<string, string>,
  via: "cli" | "in-process",
) {
  assert.equal(started.code, 0, started.stderr);
  const result = JSON.parse(started.stdout);
  assert.deepEqual(
    Object.entries(result.counts).filter(([, n]) => n !== 0),
    [["done", 5]],
  );
  assert.equal(result.recovery.replay.failed, 0, JSON.stringify(result.recovery.replay.failures));
  assert.deepEqual(await openRuns(sdd), [], "every previous run was replayed and closed");
  const ledger = (await readFile(path.join(sdd, "metrics/cost-ledger.jsonl"), "utf8")).trim().split("\n");
  assert.equal(ledger.length, 1, "one ledger row per usage");
  if (via === "cli") {
    const status = JSON.parse((await runCli(["--sdd", sdd, "status", "--json"], { env })).stdout);
    assert.equal(status.cost_usd, 0.5);
    const doctor = await runCli(["--sdd", sdd, "doctor", "--json"], { env });
    assert.equal(doctor.code, 0, doctor.stdout); // includes the WAL chains and the audit chain
  } else {
    assert.equal(totalCost((await loadState(new Workspace(sdd))).state), 0.5);
    const { checks } = await runDoctor(sdd, { env: { ...process.env, ...env } });
    assert.deepEqual(
      checks.filter((c) => c.verdict === "fail"),
      [],
    );
  }
}

/**
 * What `dr backup --to ARCHIVE` does, in-process: the same job (archive, backups.jsonl row, audit
 * event), its audit key found through the same environment as the CLI's (set only while it runs).
 */
async function backupInProcess(sdd: string, archive: string, env: Record<string, string>): Promise<void> {
  const job = await withEnv(env, async () => runBackupJob(await openWorkspace(sdd), { to: archive }));
  assert.deepEqual(job.warnings, [], "the backup and its audit event were recorded");
}

const START = ["start", "--until-idle", "--max-agents", "2", "--poll", "20", "--retry-backoff", "10"];

for (const point of POINTS) {
  test(`SIGKILL at ${point}: a restart and a restore of a backup both finish, no command runs twice`, async () => {
    const { dir, cleanup } = await scratchDir("bernstein-cp-");
    try {
      const sdd = path.join(dir, ".sdd");
      const { workspace } = await initWorkspace(sdd);
      // Relative paths: a command writes into the project folder it runs in (the restored copy's own).
      for (const id of X_TASKS) {
        await addTask(workspace, { id, title: id, command: `echo ${id} >> results.txt; sleep 0.05` });
      }
      // Fails its first attempt, then succeeds (exercises task_failed and task_retry).
      await addTask(workspace, {
        id: "f1",
        title: "f1",
        command: "test -f f1.marker || { touch f1.marker; exit 3; }",
        maxRetries: 1,
      });
      // Reports usage: the ledger must get exactly one row for it.
      await addTask(workspace, {
        id: "c1",
        title: "c1",
        command: `echo '{"cost_usd": 0.5, "input_tokens": 2, "output_tokens": 1}'`,
      });
      const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
      const crashed = await runCli(["--sdd", sdd, ...START], {
        cwd: dir,
        env: { ...env, BERNSTEIN_CRASH_AT: point },
      });
      assert.equal(crashed.signal, "SIGKILL", `the crash point was reached: ${crashed.stderr}`);
      await waitForAgentsGone(dir, sdd);

      // The crashed workspace as a disaster leaves it, backed up before anything recovers it.
      const archive = path.join(dir, "crashed.tar.gz");
      const viaCli = point === POINTS[0];
      if (viaCli) {
        const backup = await runCli(["--sdd", sdd, "dr", "backup", "--to", archive, "--json"], { env });
        assert.equal(backup.code, 0, backup.stderr);
      } else {
        await backupInProcess(sdd, archive, env);
      }

      // Path 1: restart in place.
      const again = await runCli(["--sdd", sdd, ...START, "--json"], { cwd: dir, env });
      await assertFinished(sdd, again, env, viaCli ? "cli" : "in-process");
      if (point === "task_claimed:after_action") {
        // The claim's intent never committed: the replay puts the file back and counts it.
        assert.equal(JSON.parse(again.stdout).recovery.orphaned_claims_requeued, 1);
      }
      assert.deepEqual(await resultLines(dir), X_TASKS);

      // Path 2: restore the backup into another folder and start there. The project folder is not
      // part of `.sdd/`: its marker file is carried over as a checkout of the project would be.
      const other = path.join(dir, "restored");
      const otherSdd = path.join(other, ".sdd");
      if (viaCli) {
        const restore = await runCli(["dr", "restore", "--from", archive, "--sdd", otherSdd, "--json"], {
          env,
        });
        assert.equal(restore.code, 0, restore.stderr);
      } else {
        // What `dr restore` does with that env: the audit key path under XDG_STATE_HOME.
        await restoreFromFile(archive, otherSdd, {
          auditKeyPath: path.join(env.XDG_STATE_HOME, "bernstein", "audit.key"),
        });
      }
      await copyFile(path.join(dir, "f1.marker"), path.join(other, "f1.marker")).catch(() => {});
      const doneInBackup = Object.values((await loadState(new Workspace(otherSdd))).state.tasks)
        .filter((t) => t.state === "done")
        .map((t) => (t.spec as { id: string }).id);
      const restarted = await runCli(["--sdd", otherSdd, ...START, "--json"], { cwd: other, env });
      await assertFinished(otherSdd, restarted, env, "in-process");
      const rerun = await resultLines(other);
      assert.deepEqual(rerun, [...new Set(rerun)], "no command ran twice in the restored copy");
      assert.deepEqual(
        rerun.filter((id) => doneInBackup.includes(id)),
        [],
        `tasks the backup holds as done never run again (done: ${doneInBackup.join(", ")})`,
      );
    } finally {
      await cleanup();
    }
  });
}
