import assert from "node:assert/strict";
import { cp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { NO_TASKS, runCli, runMain, scratchDir } from "../helpers.js";

/**
 * A WAL that lost its last entries is still a valid chain; what shows the loss is a position
 * recorded elsewhere: the run's closed marker, a checkpoint, a backup record. `wal verify` (exit 1),
 * `doctor` (the wal check fails) and `start` (exit 9, nothing acted on) compare every WAL's end
 * with them. A torn tail after a crash, short of every recorded position, stays legitimate.
 */

interface Finished {
  dir: string;
  sdd: string;
  walFile: string;
  runId: string;
  env: Record<string, string>;
  cli: (...args: string[]) => ReturnType<typeof runCli>;
  /** The same command run by main() in this process (a case whose process run case 1 checks). */
  main: (...args: string[]) => ReturnType<typeof runMain>;
  cleanup: () => Promise<void>;
}

/** Four tasks run to the end by one `start --until-idle`, the run closed. */
async function finishedRun(): Promise<Omit<Finished, "cleanup">> {
  const { dir } = await scratchDir("bernstein-rollback-");
  const sdd = path.join(dir, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  for (let i = 1; i <= 4; i++) {
    await addTask(workspace, { id: `t${i}`, title: `t${i}`, command: `echo hi${i} >> ran.txt` });
  }
  const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: dir, env });
  const r = await cli("start", "--until-idle", "--max-agents", "2", "--poll", "20");
  assert.equal(r.code, 0, r.stderr);
  const walDir = path.join(sdd, "runtime", "wal");
  const [name] = (await readdir(walDir)).filter((n) => n.endsWith(".wal.jsonl"));
  return {
    dir,
    sdd,
    walFile: path.join(walDir, name),
    runId: name.slice(0, -".wal.jsonl".length),
    env,
    cli,
    main: (...args: string[]) => runMain(["--sdd", sdd, ...args], { cwd: dir, env }),
  };
}

/**
 * The run is made once; every case gets it as `start` left it: the folder put back from a copy
 * taken right after the run, at the same path (agent records and backups name absolute paths).
 */
let made: Omit<Finished, "cleanup">;
let pristine: { dir: string; cleanup: () => Promise<void> };
before(async () => {
  made = await finishedRun();
  pristine = await scratchDir("bernstein-rollback-pristine-");
  await cp(made.dir, pristine.dir, { recursive: true, preserveTimestamps: true });
});
after(async () => {
  await rm(made.dir, { recursive: true, force: true });
  await pristine.cleanup();
});

async function freshRun(): Promise<Finished> {
  await rm(made.dir, { recursive: true, force: true });
  await cp(pristine.dir, made.dir, { recursive: true, preserveTimestamps: true });
  // What a case changed is undone by the next case's copy, or removed by after().
  return { ...made, cleanup: async () => {} };
}

/** `head -n -N F > x && cat x > F`. */
async function dropLastLines(file: string, n: number): Promise<void> {
  const lines = (await readFile(file, "utf8")).split("\n").filter(Boolean);
  await writeFile(file, lines.slice(0, -n).join("\n") + "\n");
}

async function walRuns(sdd: string): Promise<string[]> {
  return (await readdir(path.join(sdd, "runtime", "wal"))).filter((n) => n.endsWith(".wal.jsonl")).sort();
}

/** start refuses with exit 9 naming the run, and acts on nothing (no new run, no command re-run). */
async function assertStartRefuses(
  w: Finished,
  why: RegExp,
  run: (...args: string[]) => Promise<{ code: number | null; stderr: string }> = w.cli,
): Promise<void> {
  const before = {
    wal: await readFile(w.walFile),
    runs: await walRuns(w.sdd),
    ran: await readFile(path.join(w.dir, "ran.txt"), "utf8"),
  };
  const s = await run("start", "--until-idle", "--poll", "20");
  assert.equal(s.code, 9, s.stderr);
  const lines = s.stderr
    .trim()
    .split("\n")
    .filter((l) => !l.startsWith("warning:"));
  assert.equal(lines.length, 1, s.stderr);
  assert.match(lines[0], new RegExp(`refusing to start: WAL of run ${w.runId} (rolled back|damaged): `));
  assert.match(lines[0], why);
  assert.ok((lines[0].match(/restore a good copy/g) ?? []).length <= 1, `advice given once: ${lines[0]}`);
  assert.doesNotMatch(s.stderr, /at .*\.js:\d+/, "no stack trace");
  assert.deepEqual(await readFile(w.walFile), before.wal, "the WAL is untouched");
  assert.deepEqual(await walRuns(w.sdd), before.runs, "no new run was opened");
  assert.equal(await readFile(path.join(w.dir, "ran.txt"), "utf8"), before.ran, "no command ran again");
}

test("a closed run whose WAL lost its last 3 entries: wal verify 1, doctor fails naming run and seqs, start 9", async () => {
  const w = await freshRun();
  try {
    const marker = JSON.parse(await readFile(w.walFile.replace(/\.jsonl$/, ".closed"), "utf8"));
    await dropLastLines(w.walFile, 3);
    const lastKept = marker.last_seq - 3;

    const v = await w.cli("wal", "verify");
    assert.equal(v.code, 1, v.stdout);
    assert.match(
      v.stdout,
      new RegExp(
        `${w.runId}: seq ${marker.last_seq}, line ${lastKept + 2}: truncated: its closed marker records seq ${marker.last_seq}, but the WAL ends at seq ${lastKept}: entries ${lastKept + 1}\\.\\.${marker.last_seq} are missing`,
      ),
    );
    const vj = JSON.parse((await w.cli("wal", "verify", "--json")).stdout);
    assert.equal(vj.ok, false);
    assert.equal(vj.runs[0].ok, false);
    const fromMarker = vj.rollbacks.find((r: { evidence: string }) => r.evidence === "closed_marker");
    assert.deepEqual(
      [fromMarker.run_id, fromMarker.kind, fromMarker.expected_seq, fromMarker.wal_last_seq],
      [w.runId, "truncated", marker.last_seq, lastKept],
    );
    // The stop checkpoint (one entry before the marker's) was cut off too.
    assert.ok(
      vj.rollbacks.some((r: { evidence: string }) => r.evidence === "checkpoint"),
      v.stdout,
    );

    const d = await w.cli("doctor", "--json");
    assert.equal(d.code, 1, d.stdout);
    const wal = JSON.parse(d.stdout).checks.find((c: { name: string }) => c.name === "wal");
    assert.equal(wal.verdict, "fail");
    assert.match(
      wal.detail,
      new RegExp(
        `rolled back: run ${w.runId}: .*records seq ${marker.last_seq}, but the WAL ends at seq ${lastKept}`,
      ),
    );

    await assertStartRefuses(w, /records seq \d+, but the WAL ends at seq/);
  } finally {
    await w.cleanup();
  }
});

test("a closed run whose last entry differs from its closed marker is a break", async () => {
  const w = await freshRun();
  try {
    const markerFile = w.walFile.replace(/\.jsonl$/, ".closed");
    const marker = JSON.parse(await readFile(markerFile, "utf8"));
    await writeFile(markerFile, JSON.stringify({ ...marker, last_hash: "e".repeat(64) }) + "\n");
    const v = JSON.parse((await w.main("wal", "verify", "--json")).stdout);
    assert.equal(v.ok, false);
    assert.deepEqual(
      v.rollbacks.map((r: { kind: string; evidence: string; expected_seq: number }) => [
        r.kind,
        r.evidence,
        r.expected_seq,
      ]),
      [["diverged", "closed_marker", marker.last_seq]],
    );
    await assertStartRefuses(w, /has hash [0-9a-f]{12}…, not eeeeeeeeeeee…/, w.main);
  } finally {
    await w.cleanup();
  }
});

test("an unclosed run may lose what no record names (a crash's tail), never a checkpointed entry", async () => {
  const w = await freshRun();
  try {
    // As a crash leaves it: no closed marker. The stop checkpoint covers all but the last entry
    // (`orchestrator_stopped`).
    await rm(w.walFile.replace(/\.jsonl$/, ".closed"));
    const full = await readFile(w.walFile);
    await dropLastLines(w.walFile, 1);
    const ok = await w.main("wal", "verify", "--json");
    assert.equal(ok.code, 0, ok.stdout);
    assert.deepEqual(JSON.parse(ok.stdout).rollbacks, []);

    await writeFile(w.walFile, full);
    await dropLastLines(w.walFile, 2);
    const v = await w.main("wal", "verify", "--json");
    assert.equal(v.code, 1, v.stdout);
    const [r] = JSON.parse(v.stdout).rollbacks;
    assert.equal(r.evidence, "checkpoint");
    assert.equal(r.kind, "truncated");
    assert.match(
      r.message,
      /^checkpoint cp-\S+ records seq (\d+), but the WAL ends at seq \d+: entry \1 is missing$/,
    );
    const d = await w.cli("doctor");
    assert.equal(d.code, 1, d.stdout);
    assert.match(d.stdout, /FAIL wal: rolled back: .*checkpoint cp-/);
    await assertStartRefuses(w, /checkpoint cp-\S+ records seq \d+, but the WAL ends at seq/, w.main);

    // The lost entry back (a good copy restored): start runs again, replaying the unclosed run.
    await writeFile(w.walFile, full.subarray(0, full.lastIndexOf("\n", full.length - 2) + 1));
    const s = await w.cli("start", "--until-idle", "--poll", "20", "--json");
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(JSON.parse(s.stdout).counts, { ...NO_TASKS, done: 4 });
  } finally {
    await w.cleanup();
  }
});

test("a backup record is evidence too: the WAL must still reach the position the archive holds", async () => {
  const w = await freshRun();
  try {
    const b = await w.cli("dr", "backup", "--to", path.join(w.dir, "bk.tar.gz"));
    assert.equal(b.code, 0, b.stderr);
    const rows = (await readFile(path.join(w.sdd, "runs", "backups.jsonl"), "utf8")).trim().split("\n");
    const row = JSON.parse(rows[rows.length - 1]);
    const marker = JSON.parse(await readFile(w.walFile.replace(/\.jsonl$/, ".closed"), "utf8"));
    assert.deepEqual(row.wal_positions, {
      [w.runId]: { seq: marker.last_seq, entry_hash: marker.last_hash },
    });
    // Only the backup record is left to tell: no marker (a crash), no checkpoint.
    await rm(w.walFile.replace(/\.jsonl$/, ".closed"));
    await rm(path.join(w.sdd, "runtime", "checkpoints"), { recursive: true });
    await dropLastLines(w.walFile, 1);
    const v = await w.main("wal", "verify", "--json");
    assert.equal(v.code, 1, v.stdout);
    const [r] = JSON.parse(v.stdout).rollbacks;
    assert.deepEqual([r.evidence, r.kind, r.expected_seq], ["backup", "truncated", marker.last_seq]);
    assert.match(r.recorded_by, /^backup .*bk\.tar\.gz \(/);
    await assertStartRefuses(w, /backup .*bk\.tar\.gz .* records seq \d+, but the WAL ends at seq/, w.main);
  } finally {
    await w.cleanup();
  }
});

test("a run that a closed marker names but whose WAL file is gone is a break", async () => {
  const w = await freshRun();
  try {
    await rm(w.walFile);
    const v = await w.main("wal", "verify");
    assert.equal(v.code, 1, v.stdout);
    assert.match(
      v.stdout,
      new RegExp(`${w.runId}: missing_run: its closed marker records seq \\d+, but the run has no WAL file`),
    );
    const d = await w.main("doctor");
    assert.equal(d.code, 1);
    assert.match(d.stdout, /FAIL wal: rolled back/);
  } finally {
    await w.cleanup();
  }
});

test("a torn backup row (a crash mid-append) does not swallow the next backup's row, and is named", async () => {
  const w = await freshRun();
  try {
    const log = path.join(w.sdd, "runs", "backups.jsonl");
    assert.equal((await w.cli("dr", "backup", "--to", path.join(w.dir, "b1.tar.gz"))).code, 0);
    await truncate(log, (await stat(log)).size - 40);
    const b = await w.cli("dr", "backup", "--to", path.join(w.dir, "b2.tar.gz"));
    assert.equal(b.code, 0, b.stderr);
    const lines = (await readFile(log, "utf8")).split("\n");
    assert.throws(() => JSON.parse(lines[0]), "the torn fragment stays on its own line");
    assert.match(JSON.parse(lines[1]).location, /b2\.tar\.gz$/);
    // Only the backup records are left to tell of the lost entry.
    await rm(w.walFile.replace(/\.jsonl$/, ".closed"));
    await rm(path.join(w.sdd, "runtime", "checkpoints"), { recursive: true });
    await dropLastLines(w.walFile, 1);
    const v = await w.main("wal", "verify", "--json");
    assert.equal(v.code, 1, v.stdout);
    const doc = JSON.parse(v.stdout);
    assert.deepEqual(
      doc.rollbacks.map((r: { evidence: string; kind: string }) => [r.evidence, r.kind]),
      [["backup", "truncated"]],
    );
    assert.deepEqual(
      doc.unreadable_backup_rows.map((p: { line: number }) => p.line),
      [1],
    );
    assert.match(v.stderr, /backups\.jsonl line 1: not a backup row .*not counted/);
    await assertStartRefuses(w, /backup .*b2\.tar\.gz .* records seq \d+, but the WAL ends at seq/, w.main);
    const s = await w.main("dr", "status");
    assert.match(s.stdout, /Backup: +.*b2\.tar\.gz/);
    assert.match(s.stderr, /backups\.jsonl line 1: not a backup row/);
    const rb = JSON.parse((await w.main("dr", "runbook", "--json")).stdout);
    assert.match(
      await readFile(rb.runbook, "utf8"),
      /- Backup record: .*backups\.jsonl line 1: not a backup row/,
    );
  } finally {
    await w.cleanup();
  }
});

test("a corrupt closed marker is a break everywhere and is never rewritten; a marker without our fields is valid", async () => {
  const w = await freshRun();
  try {
    const markerFile = w.walFile.replace(/\.jsonl$/, ".closed");
    // A marker as another writer may leave it (no run_id, no recorded end) proves nothing but is no break.
    await writeFile(markerFile, JSON.stringify({ closed_at: "2026-01-01T00:00:00Z" }) + "\n");
    assert.equal((await w.main("wal", "verify")).code, 0);

    await dropLastLines(w.walFile, 1);
    const garbage = '{"run_id": garbage\n';
    await writeFile(markerFile, garbage);
    const v = await w.main("wal", "verify", "--json");
    assert.equal(v.code, 1, v.stdout);
    const [r] = JSON.parse(v.stdout).rollbacks;
    assert.deepEqual([r.kind, r.evidence, r.expected_seq], ["corrupt_marker", "closed_marker", null]);
    const d = await w.main("doctor");
    assert.equal(d.code, 1);
    assert.match(d.stdout, /FAIL wal: .*closed marker .*\.wal\.closed is corrupt \(not JSON/);
    const st = await w.main("status");
    assert.equal(st.code, 9, st.stdout);
    assert.match(st.stdout, /integrity: corrupt_marker:/);
    await assertStartRefuses(w, /WAL of run \S+ damaged: its closed marker .* is corrupt/, w.main);
    assert.equal(await readFile(markerFile, "utf8"), garbage, "the marker is left as found");
  } finally {
    await w.cleanup();
  }
});
