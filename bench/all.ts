/**
 * Runs every bench in sequence (`npm run bench`), each as its own process with --json, started as
 * bin/bernstein starts Node (bench/launch.ts).
 * `npm run bench -- --json` prints ONE JSON document: the machine's load average at start and
 * end, every bench's figures, every goal (`{name, ours, baseline, ratio, target, met}`), and
 * `warnings`: what a bench said of the conditions it measured in (its `warnings`); without
 * --json, each bench's line, one line per goal, then the warnings. A bench not built is skipped;
 * one that fails is recorded with its exit code. See bench/README.md.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Goal } from "./support/measure.js";
import { benchOptions } from "./support/options.js";
import { launcherEnv, launcherFlags } from "../src/workspace/launcher.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const BENCHES = ["wal", "recovery", "dr", "orchestrator", "replication", "s3", "archive"];
const json = benchOptions({
  invocation: "npm run bench --",
  about: `Runs every bench (${BENCHES.join(", ")}) with --json, each as its own process, and sums up their goals.`,
  options: {
    json: { kind: "flag", help: "print one JSON document with every figure, baseline, ratio and goal" },
  },
}).json;

/** Goals of a bench that predates the common `goals` list: its own `pass` or `met` flags. */
function legacyGoals(name: string, doc: Record<string, unknown>): Goal[] {
  const flags: Array<[string, unknown]> =
    doc.met && typeof doc.met === "object"
      ? Object.entries(doc.met)
      : "pass" in doc
        ? [["pass", doc.pass]]
        : [];
  return flags.map(([flag, met]) => ({
    name: `${name}.${flag}`,
    unit: "see the bench's figures",
    ours: NaN,
    baseline: null,
    baseline_is: "see the bench's figures",
    ratio: null,
    target: JSON.stringify(doc.target ?? doc.targets ?? "see the bench"),
    met: met === true,
  }));
}

const loadStart = os.loadavg();
const benches: Record<string, unknown> = {};
const goals: Goal[] = [];
/** What a bench says about the conditions it measured in (bench name first). */
const warnings: string[] = [];
for (const name of BENCHES) {
  const file = path.join(here, `${name}.js`);
  if (!existsSync(file)) continue;
  const res = spawnSync(process.execPath, [...launcherFlags(), file, "--json"], {
    env: launcherEnv(),
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const last = res.stdout.trim().split("\n").pop() ?? "";
  let doc: Record<string, unknown> | undefined;
  try {
    doc = JSON.parse(last) as Record<string, unknown>;
  } catch {
    doc = undefined;
  }
  if (res.status !== 0 || !doc) {
    benches[name] = { error: `exit ${res.status ?? res.signal}`, ...(doc ?? {}) };
    goals.push({
      name: `${name}.ran`,
      unit: "exit code",
      ours: res.status ?? -1,
      baseline: null,
      baseline_is: "none",
      ratio: null,
      target: "exit 0",
      met: false,
    });
    continue;
  }
  benches[name] = doc;
  if (Array.isArray(doc.warnings)) warnings.push(...(doc.warnings as string[]).map((w) => `${name}: ${w}`));
  goals.push(...(Array.isArray(doc.goals) ? (doc.goals as Goal[]) : legacyGoals(name, doc)));
  if (!json) process.stdout.write(last + "\n");
}
const report = {
  machine: { cpus: os.availableParallelism(), load_average_start: loadStart, load_average_end: os.loadavg() },
  note: "on a loaded machine only the ratios (figures against baselines measured in the same run) count",
  goals,
  all_met: goals.every((g) => g.met),
  warnings,
  benches,
};
if (json) process.stdout.write(JSON.stringify(report) + "\n");
else {
  for (const g of goals)
    process.stdout.write(
      `${g.met ? "met    " : "NOT MET"} ${g.name}: ours ${g.ours} / baseline ${g.baseline} = ${g.ratio} (${g.target})\n`,
    );
  for (const w of warnings) process.stdout.write(`warning: ${w}\n`);
}
process.exitCode = Object.values(benches).some((b) => (b as { error?: string }).error) ? 1 : 0;
