/**
 * The orchestrator soak (`npm run soak`): the crash test at scale — 200 tasks appending their id to
 * a results file, `--max-agents 4`, the orchestrator SIGKILLed at 20 random moments and restarted,
 * then run to the end. Checks every id exactly once, status counts, WAL chains, audit chain, doctor.
 * Prints one JSON object; exit 1 on any failure. `--help` lists what can vary.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { listRuns } from "../src/wal/reader.js";
import { Workspace } from "../src/workspace/layout.js";
import { prng } from "../test/helpers.js";
import { cli, makeCrashBacklog, runCrashLoop } from "../test/orchestrator/support/crash.js";
import { benchOptions } from "./support/options.js";

const options = benchOptions({
  invocation: "node dist/bench/soak-orchestrator.js",
  about: "The orchestrator crash soak: tasks run to the end through SIGKILLs of the orchestrator.",
  options: {
    json: { kind: "flag", help: "accepted (the output is always one JSON object)" },
    tasks: { kind: "number", default: 200, integer: true, min: 1, help: "tasks of the backlog" },
    kills: { kind: "number", default: 20, integer: true, help: "SIGKILLs of the orchestrator" },
    seed: {
      kind: "number",
      default: Date.now() % 1_000_000,
      integer: true,
      help: "seed of the kill moments",
    },
  },
});

async function main(): Promise<number> {
  const { tasks, kills, seed } = options;
  const rand = prng(seed);
  const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-soak-orch-"));
  const t0 = Date.now();
  const problems: string[] = [];
  try {
    const s = await makeCrashBacklog(dir, tasks, rand);
    const out = await runCrashLoop(s, { kills, maxAgents: 4, rand, minMs: 50, maxMs: 2000 });
    if (out.final.code !== 0)
      problems.push(`final start exited ${out.final.code}: ${out.final.stderr.trim()}`);
    const counts = new Map<string, number>();
    for (const l of out.lines) counts.set(l, (counts.get(l) ?? 0) + 1);
    const missing = s.ids.filter((id) => !counts.has(id));
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const unknown = [...counts.keys()].filter((id) => !s.ids.includes(id));
    if (missing.length) problems.push(`missing: ${missing.join(", ")}`);
    if (duplicated.length) problems.push(`ran more than once: ${duplicated.join(", ")}`);
    if (unknown.length) problems.push(`unknown lines: ${unknown.join(", ")}`);
    const status = JSON.parse((await cli(s, ["status", "--json"])).stdout);
    if (status.tasks.done !== tasks) problems.push(`status says ${status.tasks.done} done`);
    const runs = (await listRuns(new Workspace(s.sdd))).length;
    const wal = await cli(s, ["wal", "verify", "--json"]);
    if (wal.code !== 0) problems.push(`wal verify exited ${wal.code}: ${wal.stdout}${wal.stderr}`);
    const audit = await cli(s, ["audit", "verify"]);
    if (audit.code !== 0) problems.push(`audit verify exited ${audit.code}: ${audit.stdout}${audit.stderr}`);
    const doctor = await cli(s, ["doctor", "--json"]);
    if (doctor.code !== 0) problems.push(`doctor exited ${doctor.code}: ${doctor.stdout}`);
    const result = {
      soak: "orchestrator",
      ok: problems.length === 0 && out.kills >= kills,
      seed,
      tasks,
      kills: out.kills,
      kills_while_running: out.killsWhileRunning,
      starts: out.starts,
      wal_runs: runs,
      done: status.tasks.done,
      results_lines: out.lines.length,
      duplicated: duplicated.length,
      missing: missing.length,
      wall_s: +((Date.now() - t0) / 1000).toFixed(1),
      problems,
    };
    process.stdout.write(JSON.stringify(result) + "\n");
    return result.ok ? 0 : 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => (process.exitCode = code),
  (err) => {
    process.stderr.write(`soak orchestrator: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  },
);
