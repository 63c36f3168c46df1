/**
 * Every bench's command line: `--help` lists its options, and a typo or a bad value is refused
 * (one line, exit 2) before anything is measured — no temp folder made, no child started.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { benchOptions, usageOf } from "../../bench/support/options.js";
import { REPO_ROOT } from "../helpers.js";

const BUILT = path.join(REPO_ROOT, "dist", "bench");
const BENCHES = [
  "all",
  "archive",
  "archive-objects",
  "dr",
  "orchestrator",
  "recovery",
  "replication",
  "s3",
  "soak",
  "soak-orchestrator",
  "wal",
];

function runBench(name: string, args: string[]) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-options-"));
  try {
    const r = spawnSync(process.execPath, [path.join(BUILT, `${name}.js`), ...args], {
      encoding: "utf8",
      env: { ...process.env, TMPDIR: tmp },
      timeout: 60_000,
    });
    return { ...r, leftInTmp: readdirSync(tmp) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

test("a bench refuses what it does not know before it measures anything", () => {
  const cases: Array<[string, string[], RegExp]> = [
    ["dr", ["--runs", "x"], /^bench:dr: --runs wants an integer ≥ 1, not "x"; see --help$/],
    ["dr", ["--runs"], /^bench:dr: option '--runs <value>' argument missing; see --help$/],
    ["dr", ["--io-pressure", "5:sync"], /^bench:dr: --io-pressure wants MB\[:fsync\], not "5:sync"/],
    [
      "archive",
      ["--only", "rpo,restor"],
      /^bench:archive: --only wants SECTION\[,SECTION\.\.\.\], not "rpo,restor"/,
    ],
    ["wal", ["--run", "3"], /^bench:wal: unknown option '--run'; see --help$/],
    ["soak", ["dr", "orchestrater"], /^soak: no soak for orchestrater \(domains: orchestrator, dr\)$/],
    ["recovery", ["--large", "10"], /^bench:recovery: --large wants an integer ≥ 2000, not "10"/],
  ];
  for (const name of BENCHES) cases.push([name, ["--bogus"], /unknown option '--bogus'; see --help$/]);
  for (const [name, args, said] of cases) {
    const r = runBench(name, args);
    const what = `${name} ${args.join(" ")}`;
    assert.equal(r.status, 2, `${what}: exit ${r.status}, stderr ${r.stderr}`);
    assert.equal(r.stdout, "", what);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
    assert.match(lines[0]!, said, what);
    assert.deepEqual(r.leftInTmp, [], `${what} made files before refusing`);
  }
});

test("--help lists every option of a bench with its default, and runs nothing", () => {
  for (const name of BENCHES) {
    const r = runBench(name, ["--help"]);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, /^usage: /, name);
    assert.match(r.stdout, /--help +print this and exit/, name);
    assert.deepEqual(r.leftInTmp, [], name);
  }
  const dr = runBench("dr", ["--help"]).stdout;
  for (const line of [
    /--runs N +alternating whole-process runs per row \(default 5\)/,
    /--io-pressure MB\[:fsync\] /,
  ])
    assert.match(dr, line);
});

test("options come back typed, with their defaults where not given", () => {
  const cmd = {
    invocation: "npm run bench:x --",
    about: "x",
    options: {
      json: { kind: "flag" as const, help: "j" },
      runs: { kind: "number" as const, default: 5, integer: true, min: 1, help: "r" },
      seconds: { kind: "number" as const, default: 2, min: 0.1, help: "s" },
      only: { kind: "string" as const, default: "a,b", help: "o" },
      pressure: { kind: "string" as const, help: "p" },
    },
  };
  assert.deepEqual(benchOptions(cmd, []), {
    positionals: [],
    json: false,
    runs: 5,
    seconds: 2,
    only: "a,b",
    pressure: undefined,
  });
  assert.deepEqual(
    benchOptions(cmd, ["--json", "--runs", "3", "--seconds=0.5", "--only", "b", "--pressure", "7"]),
    {
      positionals: [],
      json: true,
      runs: 3,
      seconds: 0.5,
      only: "b",
      pressure: "7",
    },
  );
  assert.match(usageOf(cmd), /--seconds N +s \(default 2\)\n/);
});

test("npm run bench:NAME starts the bench as bin/bernstein starts Node, and answers with its exit code", () => {
  const refused = runBench("launch", ["wal", "--run", "3"]);
  assert.equal(refused.status, 2, refused.stderr);
  assert.equal(refused.stderr, "bench:wal: unknown option '--run'; see --help\n");
  const help = runBench("launch", ["dr", "--help"]);
  assert.equal(help.status, 0, help.stderr);
  assert.equal(help.stdout, runBench("dr", ["--help"]).stdout);
  for (const name of ["wa", "launch", "../src/cli/main", ""]) {
    const r = runBench("launch", name ? [name] : []);
    assert.equal(r.status, 2, name);
    assert.match(r.stderr, /^bench: no bench named ".*"; usage: launch\.js NAME \[ARGS\]\n$/, name);
  }
  const scripts = (
    JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    }
  ).scripts;
  for (const [script, command] of Object.entries(scripts))
    if (/^bench:|^soak$/.test(script))
      assert.match(command, /node dist\/bench\/launch\.js [a-z0-9-]+$/, script);
});
