/**
 * `npm run bench:orchestrator -- --json` (`--help` lists the options)
 *
 * Runs a backlog of no-op tasks (`true`) through the orchestrator (in this process, real WAL,
 * real fsyncs, real detached agent wrappers) and, in the same run, the baselines:
 *  - `direct_sh`: the same commands spawned directly (`sh -c true`), same parallelism, no orchestrator;
 *  - `direct_wrapper`: the agent wrapper spawned directly for each command (what a process costs
 *    with pid record, log and completion record, without scheduling or WAL).
 * Prints one JSON object: decisions per second, scheduling overhead per task in ms (orchestrator
 * wall time minus the direct_sh baseline, per task), and the decomposition against the wrapper;
 * and the worktree rows (bench/support/merge-bench.ts): per-task overhead of a worktree and its
 * merge on a repository of --repo-files files, and merge decisions/s with 4 agents on one branch.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Orchestrator } from "../src/orchestrator/orchestrator.js";
import { WRAPPER_MAIN } from "../src/orchestrator/wrapper.js";
import { addTask } from "../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../src/wal/reader.js";
import { initWorkspace } from "../src/workspace/layout.js";
import { STATE_DECISIONS } from "../src/state/reducer.js";
import { benchWorktreeMerges } from "./support/merge-bench.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";

const options = benchOptions({
  invocation: "npm run bench:orchestrator --",
  about: "No-op tasks through the orchestrator against spawning them directly, and worktree merges.",
  options: {
    json: JSON_OUTPUT,
    tasks: { kind: "number", default: 200, integer: true, min: 1, help: "tasks of the throughput rows" },
    "max-agents": { kind: "number", default: 4, integer: true, min: 1, help: "agents at once" },
    "repo-files": {
      kind: "number",
      default: 10000,
      integer: true,
      help: "files of the repository of the worktree rows (0 skips them)",
    },
    "merge-tasks": {
      kind: "number",
      default: 20,
      integer: true,
      min: 1,
      help: "tasks merged in the worktree rows",
    },
  },
});
const TASKS = options.tasks;
const MAX_AGENTS = options["max-agents"];
const JSON_OUT = options.json;
/** Files of the repository for the worktree rows (0 skips them). */
const REPO_FILES = options["repo-files"];
const MERGE_TASKS = options["merge-tasks"];

/** Runs `count` jobs with at most `parallel` at once; resolves with the wall time in seconds. */
async function pool(count: number, parallel: number, job: (i: number) => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  let next = 0;
  const workers = Array.from({ length: Math.min(parallel, count) }, async () => {
    while (next < count) await job(next++);
  });
  await Promise.all(workers);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function run(cmd: string, args: string[], opts: { detached?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: "ignore", detached: opts.detached });
    child.on("error", reject);
    child.on("exit", () => resolve());
  });
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), "bernstein-bench-orch-"));
  process.env.XDG_STATE_HOME = path.join(scratch, "state");
  delete process.env.BERNSTEIN_AUDIT_KEY_PATH;
  try {
    // Baseline 1: the commands alone.
    const directSh = await pool(TASKS, MAX_AGENTS, () => run("sh", ["-c", "true"]));

    // Baseline 2: the agent wrapper alone (a node process per task, pid record, completion record).
    const { workspace: wws } = await initWorkspace(path.join(scratch, "wrapper-only", ".sdd"));
    const directWrapper = await pool(TASKS, MAX_AGENTS, (i) =>
      run(
        process.execPath,
        [
          WRAPPER_MAIN,
          JSON.stringify({
            sdd: wws.root,
            agent_id: `w-${i}#1`,
            task_id: `w-${i}`,
            attempt: 1,
            argv: ["sh", "-c", "true"],
            cwd: wws.projectDir,
            env: {},
            timeout_s: 60,
          }),
        ],
        { detached: true },
      ),
    );

    // The orchestrator.
    const { workspace: ws } = await initWorkspace(path.join(scratch, "orch", ".sdd"));
    for (let i = 0; i < TASKS; i++) {
      await addTask(ws, { id: `n-${String(i).padStart(5, "0")}`, title: `noop ${i}`, command: "true" });
    }
    const t0 = process.hrtime.bigint();
    const orch = await Orchestrator.open(ws, {
      maxAgents: MAX_AGENTS,
      untilIdle: true,
      pollMs: 20,
      checkpointEvery: 100,
      checkpointIntervalS: 0,
    });
    const result = await orch.run();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    if (result.counts.done !== TASKS)
      throw new Error(`bench: only ${result.counts.done}/${TASKS} tasks done`);

    let entries = 0;
    let decisions = 0;
    const stateTypes = new Set<string>(STATE_DECISIONS);
    for (const r of await listRuns(ws)) {
      for await (const { entry } of readWalEntries(r.file)) {
        entries++;
        if (entry.committed && stateTypes.has(entry.decision_type)) decisions++;
      }
    }
    const worktrees =
      REPO_FILES > 0
        ? {
            one_agent: await benchWorktreeMerges(scratch, REPO_FILES, MERGE_TASKS, 1),
            four_agents: await benchWorktreeMerges(scratch, REPO_FILES, MERGE_TASKS, 4),
          }
        : null;
    const out = {
      bench: "orchestrator",
      tasks: TASKS,
      max_agents: MAX_AGENTS,
      orchestrator_wall_s: +wall.toFixed(3),
      decisions,
      wal_entries: entries,
      decisions_per_s: +(decisions / wall).toFixed(1),
      wal_entries_per_s: +(entries / wall).toFixed(1),
      tasks_per_s: +(TASKS / wall).toFixed(1),
      baseline_direct_sh_wall_s: +directSh.toFixed(3),
      baseline_direct_wrapper_wall_s: +directWrapper.toFixed(3),
      scheduling_overhead_per_task_ms: +(((wall - directSh) / TASKS) * 1000).toFixed(2),
      overhead_beyond_wrapper_per_task_ms: +(((wall - directWrapper) / TASKS) * 1000).toFixed(2),
      ratio_to_direct_sh: +(wall / directSh).toFixed(2),
      ratio_to_direct_wrapper: +(wall / directWrapper).toFixed(2),
      peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
      cpus: os.cpus().length,
      // The machine is shared: the 1-minute load average says how noisy the figures are.
      load_avg_1m: +os.loadavg()[0].toFixed(1),
      // Worktree add + leftovers commit + task_merged (merge, WAL, worktree and branch removal) per
      // task on a repository of repo_files files; without worktrees those steps do not exist.
      repo_files: REPO_FILES,
      worktree_merge_overhead_per_task_ms: worktrees?.one_agent.per_task_ms ?? null,
      merge_decisions_per_s_4_agents: worktrees?.four_agents.merge_decisions_per_s ?? null,
      worktree_merge_tasks: MERGE_TASKS,
    };
    if (JSON_OUT) process.stdout.write(JSON.stringify(out) + "\n");
    else {
      for (const [k, v] of Object.entries(out)) process.stdout.write(`${k}: ${v}\n`);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench orchestrator: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
