import assert from "node:assert/strict";
import { copyFile, readFile, readdir, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  listCheckpointFiles,
  newestValidCheckpoint,
  validateCheckpointFile,
  writeCheckpoint,
} from "../../src/checkpoint/checkpoint.js";
import { applyEntry, emptyState, type OrchestratorState } from "../../src/state/reducer.js";
import { loadState } from "../../src/checkpoint/load-state.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { prng, runCli, scratchDir } from "../helpers.js";
import { randomDecisions } from "./support/decisions.js";
import { REFERENCE } from "./support/fixture.js";
import { appendRecords, steppingClock } from "./support/wal-runs.js";
import { makeRepo } from "../orchestrator/support/git-repo.js";
import { orchestratorWorkspace } from "../orchestrator/support/workspace.js";
import { addTask } from "../../src/orchestrator/tasks.js";

test("property: newest checkpoint + WAL suffix == replay from genesis, over random decision sequences", async () => {
  for (let seed = 1; seed <= 8; seed++) {
    const { dir, cleanup } = await scratchDir();
    try {
      const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
      const r = prng(seed * 7919);
      const decisions = randomDecisions(seed, 300 + Math.floor(r() * 300));
      const clock = steppingClock(1_790_000_000 + seed);
      let memory: OrchestratorState = emptyState();
      let i = 0;
      let checkpoints = 0;
      for (let run = 0; i < decisions.length; run++) {
        const runId = `run-20261127T0000000${run}0Z-${seed.toString(16).padStart(4, "0")}`;
        const runEnd =
          run === 2 ? decisions.length : Math.min(decisions.length, i + 50 + Math.floor(r() * 200));
        // Within a run: chunks, with a checkpoint after some of them (and sometimes none at all).
        while (i < runEnd) {
          const end = Math.min(runEnd, i + 1 + Math.floor(r() * 80));
          const entries = await appendRecords(ws, runId, decisions.slice(i, end), { clock });
          for (const e of entries) memory = applyEntry(memory, runId, e);
          i = end;
          if (r() < 0.4) {
            const loaded = await loadState(ws);
            assert.deepEqual(loaded.state, memory, `seed ${seed}: state before checkpoint`);
            await writeCheckpoint(ws, loaded.state);
            checkpoints++;
          }
        }
      }
      const fromCheckpoint = await loadState(ws);
      const fromGenesis = await loadState(ws, { fromGenesis: true });
      assert.deepEqual(fromGenesis.state, memory, `seed ${seed}: genesis replay equals the live fold`);
      assert.deepEqual(
        fromCheckpoint.state,
        fromGenesis.state,
        `seed ${seed}: checkpoint + suffix equals genesis`,
      );
      assert.equal(fromGenesis.applied, decisions.length);
      assert.deepEqual(fromCheckpoint.warnings, []);
      if (checkpoints > 0) {
        assert.ok(fromCheckpoint.checkpoint, `seed ${seed}: a checkpoint was used`);
        assert.ok(fromCheckpoint.applied < decisions.length);
      }
    } finally {
      await cleanup();
    }
  }
});

async function workspaceWithHistory(dir: string) {
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  const decisions = randomDecisions(42, 200);
  const clock = steppingClock(1_790_000_000);
  await appendRecords(ws, "run-a", decisions.slice(0, 120), { clock, markClosed: true });
  const first = await writeCheckpoint(ws, (await loadState(ws)).state);
  await appendRecords(ws, "run-b", decisions.slice(120), { clock });
  const genesis = await loadState(ws, { fromGenesis: true });
  return { ws, first, genesis };
}

test("a corrupt newest checkpoint is reported, the previous one is used, nothing is deleted", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, first, genesis } = await workspaceWithHistory(dir);
    const newest = await writeCheckpoint(ws, genesis.state);
    // Truncated (a torn copy) ...
    const text = await readFile(newest.file, "utf8");
    await writeFile(newest.file, text.slice(0, Math.floor(text.length / 2)));
    let loaded = await loadState(ws);
    assert.equal(loaded.checkpoint?.id, first.checkpoint_id);
    assert.deepEqual(loaded.state, genesis.state);
    assert.equal(loaded.rejected_checkpoints[0].id, newest.checkpoint_id);
    assert.ok(
      loaded.warnings[0].startsWith(
        `checkpoint ${newest.file} is not valid (corrupt): not valid JSON (unterminated string`,
      ),
      loaded.warnings[0],
    );
    assert.ok(
      loaded.warnings[0].endsWith(`; the older checkpoint ${first.checkpoint_id} is used instead`),
      loaded.warnings[0],
    );
    // ... or one altered byte that still parses.
    await writeFile(newest.file, text.replace('"completed_count":', '"completed_count":1'));
    loaded = await loadState(ws);
    assert.equal(loaded.checkpoint?.id, first.checkpoint_id);
    assert.match(loaded.warnings[0], /body hash mismatch/);
    assert.ok(await stat(newest.file), "the bad checkpoint is kept for inspection");

    const r = await runCli(["--sdd", ws.root, "checkpoint", "show", newest.checkpoint_id, "--json"]);
    assert.equal(r.code, 5);
    assert.match(JSON.parse(r.stdout).checkpoint.problem, /body hash mismatch/);
  } finally {
    await cleanup();
  }
});

test("status, start and doctor say that the newest checkpoint is not valid, which file, why, and what was used instead", async () => {
  const { sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-cp-bad-");
  try {
    await addTask(ws, { id: "a", title: "a", command: "true" });
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const [newest, older] = await listCheckpointFiles(ws);
    await truncate(newest.file, 100);
    const rel = path.relative(path.dirname(sdd), newest.file);
    const why = `${rel} is not valid (corrupt): not valid JSON (unterminated string at position 100): truncated or damaged; `;
    const instead = older
      ? `the older checkpoint ${older.id} is used instead`
      : "no valid checkpoint: the state is replayed from the WAL alone";

    const status = await cli("status", "--json");
    assert.equal(status.code, 0, status.stderr);
    const doc = JSON.parse(status.stdout);
    assert.equal(doc.checkpoint?.id, older?.id);
    assert.deepEqual(
      doc.checkpoint_rejected.map((r: { file: string; kind: string }) => [r.file, r.kind]),
      [[newest.file, "corrupt"]],
    );
    const text = (await cli("status")).stdout.split("\n");
    assert.ok(text.includes(`checkpoint: ${why}${instead}`), text.join("\n"));

    const doctor = await cli("doctor", "--json");
    assert.equal(doctor.code, 1);
    const check = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "checkpoint");
    assert.equal(check.verdict, "fail");
    assert.equal(check.detail, `newest checkpoint ${why}${instead}`);

    await addTask(ws, { id: "b", title: "b", command: "true" });
    const start = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(start.code, 0, start.stderr);
    assert.ok(start.stderr.split("\n").includes(`warning: checkpoint ${why}${instead}`), start.stderr);

    // The run wrote a newer good checkpoint: the damaged one no longer matters to the state, but is not hidden.
    const after = JSON.parse((await cli("doctor", "--json")).stdout).checks.find(
      (c: { name: string }) => c.name === "checkpoint",
    );
    assert.equal(after.verdict, "warn");
    assert.match(
      after.detail,
      new RegExp(`older checkpoint\\(s\\) not valid, not used: ${rel.replace(/[.]/g, "\\.")} \\(corrupt\\)`),
    );
  } finally {
    await cleanup();
  }
});

test("a checkpoint pointing at a missing or different WAL entry is reported and the previous one used", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, first, genesis } = await workspaceWithHistory(dir);
    const pos = genesis.state.wal_position!;
    const cases: [OrchestratorState["wal_position"], RegExp][] = [
      [{ ...pos, seq: pos.seq + 1000 }, /has no entry with seq/],
      [{ ...pos, entry_hash: "f".repeat(64) }, /checkpoint expects ffffffffffff/],
      [{ ...pos, run_id: "run-gone" }, /run-gone\.wal\.jsonl does not exist/],
    ];
    for (const [bad, why] of cases) {
      const cp = await writeCheckpoint(ws, { ...genesis.state, wal_position: bad });
      const check = await validateCheckpointFile(ws, cp.file);
      assert.equal(check.ok, false);
      assert.ok(!check.ok && check.kind === "wal_mismatch" && why.test(check.problem), JSON.stringify(check));
      const loaded = await loadState(ws);
      assert.equal(loaded.checkpoint?.id, first.checkpoint_id);
      assert.deepEqual(loaded.state, genesis.state);
      assert.match(loaded.warnings[0], why);
    }
    assert.equal((await listCheckpointFiles(ws)).length, 4, "nothing deleted");
  } finally {
    await cleanup();
  }
});

test("the Python reference checkpoint is reported as not ours, never crashes loading", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    await copyFile(
      path.join(REFERENCE, "workspace/.sdd/runtime/checkpoints/checkpoint-c1.json"),
      path.join(ws.checkpointsDir, "checkpoint-c1.json"),
    );
    await copyFile(
      path.join(REFERENCE, "workspace/.sdd/runtime/wal/run-golden.wal.jsonl"),
      ws.walFile("run-golden"),
    );
    const loaded = await loadState(ws);
    assert.equal(loaded.checkpoint, undefined);
    assert.equal(loaded.rejected_checkpoints[0].kind, "not_ours");
    assert.equal(loaded.applied, 40);
    const list = await runCli(["--sdd", ws.root, "checkpoint", "list", "--json"]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(JSON.parse(list.stdout).checkpoints[0].valid, false);
    // A new checkpoint of the Python WAL is ours and valid; the foreign file is kept.
    const made = await runCli(["--sdd", ws.root, "checkpoint", "--json"], {
      env: { XDG_STATE_HOME: path.join(dir, "xdg") },
    });
    assert.equal(made.code, 0, made.stderr);
    const doc = JSON.parse(made.stdout);
    assert.equal(doc.wal_position.seq, 39);
    assert.ok((await readdir(ws.checkpointsDir)).includes("checkpoint-c1.json"));
    assert.equal((await newestValidCheckpoint(ws)).valid?.id, doc.checkpoint_id);
  } finally {
    await cleanup();
  }
});

test("bernstein checkpoint --goal writes checkpoint, operator row and audit event; list/show; retention keeps 20", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws, genesis } = await workspaceWithHistory(dir);
    const env = { XDG_STATE_HOME: path.join(dir, "xdg"), BERNSTEIN_AUDIT_KEY_PATH: undefined };
    const r = await runCli(["--sdd", ws.root, "checkpoint", "--goal", "ship caf\u00e9", "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(doc.wal_position, genesis.state.wal_position);
    assert.equal(doc.metadata.task_count, Object.keys(genesis.state.tasks).length);
    assert.match(doc.metadata.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(doc.audit.written, true);
    const row = JSON.parse(await readFile(doc.session_row, "utf8"));
    assert.equal(row.goal, "ship caf\u00e9");
    assert.equal(row.checkpoint_id, doc.checkpoint_id);
    assert.deepEqual(
      row.completed_task_ids,
      Object.keys(genesis.state.tasks)
        .filter((id) => genesis.state.tasks[id].state === "done")
        .sort(),
    );
    assert.equal(row.git_sha, null, "not in a git repository");
    assert.match(path.basename(doc.session_row), /^\d{8}T\d{6}(-\d+)?-checkpoint\.json$/);
    // The audit event verifies with the key that was created for it.
    const v = await runCli(["--sdd", ws.root, "audit", "verify", "--json"], { env });
    assert.equal(v.code, 0, v.stdout);
    assert.equal(JSON.parse(v.stdout).entries, 1);

    const show = await runCli(["--sdd", ws.root, "checkpoint", "show", doc.checkpoint_id, "--json"]);
    assert.equal(show.code, 0);
    assert.equal(JSON.parse(show.stdout).checkpoint.valid, true);
    assert.equal((await runCli(["--sdd", ws.root, "checkpoint", "show", "nope"])).code, 2);

    for (let k = 0; k < 21; k++) await writeCheckpoint(ws, genesis.state);
    const ours = await listCheckpointFiles(ws);
    assert.equal(ours.length, 20);
    const list = await runCli(["--sdd", ws.root, "checkpoint", "list"]);
    assert.equal(list.code, 0);
    assert.equal(list.stdout.trim().split("\n").length, 20);
  } finally {
    await cleanup();
  }
});

test("a damaged entry in the WAL suffix is an integrity error naming file, line and seq; a torn tail is a warning", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { ws } = await workspaceWithHistory(dir);
    const file = ws.walFile("run-b");
    const original = await readFile(file, "utf8");
    const lines = original.split("\n");
    // Torn tail: the last line cut in half (what a crash mid-append leaves).
    await writeFile(file, lines.slice(0, -2).join("\n") + "\n" + lines.at(-2)!.slice(0, 40));
    const torn = await loadState(ws);
    assert.equal(torn.warnings.length, 1);
    assert.match(torn.warnings[0], /torn last line/);
    // A changed value in the middle of the suffix.
    lines[10] = lines[10]
      .replace('"committed":true', '"committed":false')
      .replace('"committed":false', '"committed":true');
    lines[10] = lines[10].replace(/"seq":10,/, '"seq":10,"x":1,');
    await writeFile(file, lines.join("\n"));
    const r = await runCli(["--sdd", ws.root, "checkpoint", "--json"], {
      env: { XDG_STATE_HOME: path.join(dir, "x") },
    });
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /run-b\.wal\.jsonl: line 11 \(seq 10\)/);
    assert.equal(JSON.parse(r.stdout).seq, 10);
  } finally {
    await cleanup();
  }
});

test("bernstein checkpoint in a git repository records its HEAD in the operator row", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const project = path.join(dir, "repo");
    const head = await makeRepo(project);
    const { ws } = await workspaceWithHistory(project);
    const env = { XDG_STATE_HOME: path.join(dir, "xdg"), BERNSTEIN_AUDIT_KEY_PATH: undefined };
    const r = await runCli(["--sdd", ws.root, "checkpoint", "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    const row = JSON.parse(await readFile(JSON.parse(r.stdout).session_row, "utf8"));
    assert.equal(row.git_sha, head);
  } finally {
    await cleanup();
  }
});
