/**
 * The crash scenario shared by the suite's crash test and `npm run soak`: a backlog of tasks whose
 * commands append their id to a results file and sleep 10-200 ms; the orchestrator is SIGKILLed at
 * random moments and restarted each time; then it runs to completion.
 */
import { spawn } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { addTask } from "../../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../../src/workspace/layout.js";
import { runCli, type CliResult, CLI_ARGV, cliEnv } from "../../helpers.js";

export interface Scenario {
  dir: string;
  sdd: string;
  results: string;
  ids: string[];
  env: Record<string, string>;
}

/** A workspace with `n` tasks (ids t-000..), each appending its id to results.txt then sleeping. */
export async function makeCrashBacklog(dir: string, n: number, rand: () => number): Promise<Scenario> {
  const sdd = path.join(dir, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const results = path.join(dir, "results.txt");
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `t-${String(i).padStart(3, "0")}`;
    const sleepMs = 10 + Math.floor(rand() * 191);
    await addTask(workspace, {
      title: `crash task ${i}`,
      id,
      priority: 1 + Math.floor(rand() * 3),
      command: `echo ${id} >> ${results}; sleep ${(sleepMs / 1000).toFixed(3)}`,
    });
    ids.push(id);
  }
  const state = path.join(dir, "xdg-state");
  await mkdir(state, { recursive: true });
  return { dir, sdd, results, ids, env: { XDG_STATE_HOME: state, BERNSTEIN_AUDIT_KEY_PATH: "" } };
}

export function cli(s: Scenario, args: string[], timeoutMs = 300_000): Promise<CliResult> {
  return runCli(["--sdd", s.sdd, ...args], { cwd: s.dir, env: s.env, timeoutMs });
}

/**
 * Starts `bernstein start --until-idle` and SIGKILLs it `killAfterMs` after a moment: its spawn
 * (`from: "spawn"`, the kill may land in start-up or recovery) or the moment it reports running in
 * `runtime/orchestrator.json` (`from: "running"`, so a loaded machine's slow start-up does not
 * swallow the kill). Resolves with whether the kill landed and in which phase.
 */
export function startAndKill(
  s: Scenario,
  maxAgents: number,
  killAfterMs: number,
  from: "spawn" | "running" = "running",
): Promise<{ killed: boolean; whileRunning: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...CLI_ARGV,
        "--sdd",
        s.sdd,
        "start",
        "--until-idle",
        "--max-agents",
        String(maxAgents),
        "--poll",
        "50",
        "--retry-backoff",
        "50",
      ],
      { cwd: s.dir, env: cliEnv(s.env), stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let killed = false;
    let running = false;
    let done = false;
    const alive = () => child.exitCode === null && child.signalCode === null;
    const kill = () => {
      if (done || !alive()) return;
      killed = true;
      child.kill("SIGKILL");
    };
    const statusFile = path.join(s.sdd, "runtime", "orchestrator.json");
    const poll = async () => {
      while (!done && alive()) {
        const st = await readFile(statusFile, "utf8").then(
          (t) => JSON.parse(t) as { pid?: number; state?: string },
          () => null,
        );
        if (st && st.pid === child.pid && st.state !== "recovering") {
          running = true;
          if (from === "running") setTimeout(kill, killAfterMs);
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    if (from === "spawn") setTimeout(kill, killAfterMs);
    void poll();
    child.on("error", reject);
    child.on("close", (code) => {
      done = true;
      resolve({ killed, whileRunning: killed && running, code, stderr });
    });
  });
}

export interface CrashOutcome {
  kills: number;
  /** Kills that landed after the orchestrator reported running (the rest hit start-up or recovery). */
  killsWhileRunning: number;
  starts: number;
  final: CliResult;
  lines: string[];
}

/** Kills at random moments until `kills` kills landed (or the backlog finished), then runs to the end. */
export async function runCrashLoop(
  s: Scenario,
  opts: { kills: number; maxAgents: number; rand: () => number; minMs?: number; maxMs?: number },
): Promise<CrashOutcome> {
  let kills = 0;
  let killsWhileRunning = 0;
  let starts = 0;
  const minMs = opts.minMs ?? 80;
  const maxMs = opts.maxMs ?? 1500;
  while (kills < opts.kills) {
    starts++;
    // Every fourth kill counts from the spawn, so some land in start-up and recovery.
    const from = starts % 4 === 0 ? "spawn" : "running";
    const r = await startAndKill(s, opts.maxAgents, minMs + Math.floor(opts.rand() * (maxMs - minMs)), from);
    if (r.killed) {
      kills++;
      if (r.whileRunning) killsWhileRunning++;
    } else if (r.code !== 0) throw new Error(`start exited ${r.code} between kills: ${r.stderr}`);
    else break; // finished before the kill: nothing left to interrupt
  }
  starts++;
  const final = await cli(s, [
    "start",
    "--until-idle",
    "--max-agents",
    String(opts.maxAgents),
    "--poll",
    "50",
    "--json",
  ]);
  const text = await readFile(s.results, "utf8").catch(() => "");
  return { kills, killsWhileRunning, starts, final, lines: text.split("\n").filter(Boolean) };
}
