/**
 * Recovery time vs history length: time to load the orchestrator state (newest valid checkpoint
 * + WAL suffix) with 1,000,000 WAL entries of history and a checkpoint 1,000 entries behind the
 * tail, against the same with 10,000 entries of history. Both workspaces hold the same number of
 * tasks (1,000), so the checkpoint is the same size and only the history length differs; the
 * ratio must stay under 2 (loading must not scan the history).
 *
 * `npm run bench:recovery -- --json` prints one JSON object; `--help` lists the options (the
 * history lengths, --keep to leave the workspaces, --with-genesis to also time a full replay).
 */
import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { writeCheckpoint } from "../src/checkpoint/checkpoint.js";
import { cloneState, StateBuilder, type OrchestratorState } from "../src/state/reducer.js";
import { loadState } from "../src/checkpoint/load-state.js";
import { buildEntry, entryLine, GENESIS_HASH, type WalRecord } from "../src/wal/entry.js";
import { initWorkspace, type Workspace } from "../src/workspace/layout.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";

function parseOptions() {
  const o = benchOptions({
    invocation: "npm run bench:recovery --",
    about: "Time to load the orchestrator's state with a long WAL history against a short one (ratio < 2).",
    options: {
      json: JSON_OUTPUT,
      large: {
        kind: "number",
        default: 1_000_000,
        integer: true,
        min: 2_000,
        help: "WAL entries of the long history",
      },
      small: {
        kind: "number",
        default: 10_000,
        integer: true,
        min: 2_000,
        help: "WAL entries of the short history",
      },
      tasks: { kind: "number", default: 1_000, integer: true, min: 1, help: "tasks in both workspaces" },
      repeat: { kind: "number", default: 11, integer: true, min: 1, help: "timed loads of each workspace" },
      keep: { kind: "flag", help: "leave the workspaces in the temp folder" },
      "with-genesis": { kind: "flag", help: "also time a full replay from genesis of the long history" },
    },
  });
  // The checkpoint's distance from the tail and the runs per workspace are the bench's design.
  return { ...o, behind: 1_000, runs: 5 };
}

type Args = ReturnType<typeof parseOptions>;

/**
 * A realistic decision stream over a fixed task population: tasks are created, then claimed,
 * spawned, fail and are retried round after round (with ticks between), and complete after a
 * number of attempts. Every action is an intent followed by its commit.
 */
function* decisionStream(tasks: number): Generator<WalRecord> {
  const pair = (decision_type: string, inputs: WalRecord["inputs"], output: WalRecord["output"] = {}) => [
    { decision_type, inputs, output: {}, committed: false },
    { decision_type, inputs, output, committed: true },
  ];
  for (let t = 0; t < tasks; t++) {
    const id = `T-${String(t).padStart(5, "0")}`;
    yield* pair("task_created", {
      task: { id, title: `task ${t}`, role: t % 3 ? "backend" : "qa", priority: t % 5 },
    });
  }
  const attempts = new Array<number>(tasks).fill(0);
  const done = new Array<boolean>(tasks).fill(false);
  for (let cycle = 0; ; cycle++) {
    const t = cycle % tasks;
    yield { decision_type: "tick_start", inputs: { tick: cycle }, output: {}, committed: true };
    if (done[t]) continue;
    const id = `T-${String(t).padStart(5, "0")}`;
    const attempt = ++attempts[t];
    yield* pair("task_claimed", { task_id: id, attempt });
    yield* pair("task_spawn_confirmed", { task_id: id, attempt, agent_id: `${id}#${attempt}` });
    const usage = { cost_usd: 0.0125, input_tokens: 1200, output_tokens: 300, model: "sonnet" };
    if (attempt >= 20 + (t % 80)) {
      yield* pair("task_completed", { task_id: id, attempt }, { exit_code: 0, ...usage });
      done[t] = true;
    } else {
      yield* pair(
        "task_failed",
        { task_id: id, attempt },
        { reason: "exit 1", exit_code: 1, terminal: false, ...usage },
      );
      yield* pair("task_retry", { task_id: id, attempt: attempt + 1 });
    }
  }
}

interface Built {
  ws: Workspace;
  dir: string;
  final: OrchestratorState;
  checkpointBytes: number;
  walBytes: number;
}

/** Writes `total` entries over `runs` runs and a checkpoint `behind` entries before the tail. */
async function buildWorkspace(total: number, a: Args): Promise<Built> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `bernstein-bench-recovery-${total}-`));
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  const builder = new StateBuilder();
  const perRun = Math.ceil(total / a.runs);
  const checkpointAt = total - a.behind - 1; // the last entry the checkpoint covers
  let snapshot: OrchestratorState | undefined;
  const stream = decisionStream(a.tasks);
  let ts = 1_790_000_000;
  let walBytes = 0;
  for (let r = 0, written = 0; written < total; r++) {
    const runId = `run-20261127T0${r}0000000Z-b${String(r).padStart(3, "0")}`;
    const out = createWriteStream(ws.walFile(runId));
    let prev = GENESIS_HASH;
    let chunk = "";
    for (let seq = 0; seq < perRun && written < total; seq++, written++) {
      const e = buildEntry(stream.next().value as WalRecord, seq, prev, (ts += 0.0001));
      prev = e.entry_hash;
      builder.apply(runId, e);
      if (written === checkpointAt) snapshot = cloneState(builder.state);
      chunk += entryLine(e);
      if (chunk.length > 1 << 20) {
        walBytes += chunk.length;
        if (!out.write(chunk)) await once(out, "drain");
        chunk = "";
      }
    }
    walBytes += chunk.length;
    out.end(chunk);
    await once(out, "close");
  }
  const cp = await writeCheckpoint(ws, snapshot!);
  return { ws, dir, final: builder.state, checkpointBytes: (await stat(cp.file)).size, walBytes };
}

async function timeLoad(ws: Workspace): Promise<{ ms: number; applied: number; state: OrchestratorState }> {
  const t0 = process.hrtime.bigint();
  const res = await loadState(ws);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.warnings.length || !res.checkpoint)
    throw new Error(`load: ${res.warnings.join("; ") || "no checkpoint"}`);
  return { ms, applied: res.applied, state: res.state };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main() {
  const a = parseOptions();
  const tBuild = Date.now();
  const large = await buildWorkspace(a.large, a);
  const small = await buildWorkspace(a.small, a);
  const buildS = (Date.now() - tBuild) / 1000;
  try {
    const L: number[] = [];
    const S: number[] = [];
    let applied = 0;
    // Warm-up once each, then alternate so machine noise hits both alike.
    for (const b of [large, small]) {
      const r = await timeLoad(b.ws);
      assert.deepStrictEqual(r.state, b.final, "loaded state differs from the fold of every entry");
      applied = r.applied;
    }
    for (let i = 0; i < a.repeat; i++) {
      L.push((await timeLoad(large.ws)).ms);
      S.push((await timeLoad(small.ws)).ms);
    }
    let genesisMs: number | undefined;
    if (a["with-genesis"]) {
      const t0 = process.hrtime.bigint();
      await loadState(large.ws, { fromGenesis: true });
      genesisMs = Number(process.hrtime.bigint() - t0) / 1e6;
    }
    const figure = median(L);
    const baseline = median(S);
    const result = {
      bench: "recovery",
      metric: "load_state_ms (newest checkpoint + WAL suffix), median",
      figure_ms: Number(figure.toFixed(2)),
      baseline_ms: Number(baseline.toFixed(2)),
      ratio: Number((figure / baseline).toFixed(3)),
      target: "ratio < 2",
      pass: figure / baseline < 2,
      history_entries: { figure: a.large, baseline: a.small },
      checkpoint_behind_tail: a.behind,
      suffix_entries_applied: applied,
      tasks: a.tasks,
      runs_per_workspace: a.runs,
      checkpoint_bytes: { figure: large.checkpointBytes, baseline: small.checkpointBytes },
      wal_bytes: { figure: large.walBytes, baseline: small.walBytes },
      samples_ms: {
        figure: L.map((x) => Number(x.toFixed(2))),
        baseline: S.map((x) => Number(x.toFixed(2))),
      },
      ...(genesisMs !== undefined ? { genesis_replay_ms_figure: Number(genesisMs.toFixed(1)) } : {}),
      build_s: buildS,
      peak_rss_mb: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    };
    if (a.json) process.stdout.write(JSON.stringify(result) + "\n");
    else {
      process.stdout.write(
        `load state: ${result.figure_ms} ms with ${a.large} entries of history vs ${result.baseline_ms} ms with ${a.small} ` +
          `(ratio ${result.ratio}, target < 2: ${result.pass ? "PASS" : "FAIL"}); suffix ${applied} entries, ` +
          `checkpoint ${large.checkpointBytes} bytes, peak RSS ${result.peak_rss_mb} MB\n`,
      );
    }
    process.exitCode = result.pass ? 0 : 1;
  } finally {
    if (!a.keep) {
      await rm(large.dir, { recursive: true, force: true });
      await rm(small.dir, { recursive: true, force: true });
    }
  }
}

await main();
