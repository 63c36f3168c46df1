import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { canonicalJson } from "../../src/json/canonical.js";
import { isInformational, STATE_DECISIONS } from "../../src/state/reducer.js";
import type { WalEntry } from "../../src/wal/entry.js";
import { IdempotencyStore } from "../../src/wal/idempotency.js";
import { readWalEntries } from "../../src/wal/reader.js";
import { readClosedMarker } from "../../src/wal/recovery.js";
import { replayWal, type ReplayHandler } from "../../src/state/replay.js";
import { WalWriter } from "../../src/wal/writer.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";
import { randomDecisions } from "./support/decisions.js";
import { appendRecords, steppingClock } from "./support/wal-runs.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "support", "replay-child.js");

const HANDLED = new Set<string>(STATE_DECISIONS);

/** Intents with no later commit of the same type and inputs (an independent, quadratic check). */
function expectedPending(entries: WalEntry[]): WalEntry[] {
  const used = new Set<number>();
  const out: WalEntry[] = [];
  entries.forEach((e, i) => {
    if (e.committed || isInformational(e.decision_type)) return;
    const j = entries.findIndex(
      (c, k) =>
        k > i &&
        !used.has(k) &&
        c.committed &&
        c.decision_type === e.decision_type &&
        canonicalJson(c.inputs) === canonicalJson(e.inputs),
    );
    if (j === -1) out.push(e);
    else used.add(j);
  });
  return out;
}

async function crashedRun(ws: Workspace, runId: string, seed: number, start = Date.now() / 1000 - 120) {
  return appendRecords(ws, runId, randomDecisions(seed, 300), { clock: steppingClock(start) });
}

function countingHandlers(counts: Map<string, number>): Record<string, ReplayHandler> {
  const h: ReplayHandler = async (e) => void counts.set(e.entry_hash, (counts.get(e.entry_hash) ?? 0) + 1);
  return Object.fromEntries(STATE_DECISIONS.map((t) => [t, h]));
}

test("replay run twice over the same WALs executes each handler at most once per entry", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const entries = await crashedRun(ws, "run-old", 11);
    const all = expectedPending(entries);
    const pending = all.filter((e) => HANDLED.has(e.decision_type));
    assert.ok(pending.length >= 5, `enough pending intents (${pending.length})`);
    const counts = new Map<string, number>();
    const first = await replayWal(ws, {
      currentRunId: "run-now",
      handlers: countingHandlers(counts),
      closeReplayed: false,
    });
    assert.equal(first.found, all.length);
    assert.equal(first.replayed, pending.length);
    assert.equal(first.unhandled, all.length - pending.length, "foreign types are reported as unhandled");
    assert.deepEqual([...counts.keys()].sort(), pending.map((e) => e.entry_hash).sort());
    const second = await replayWal(ws, {
      currentRunId: "run-now-2",
      handlers: countingHandlers(counts),
      closeReplayed: false,
    });
    assert.equal(second.found, all.length);
    assert.equal(second.skipped_idempotent, pending.length);
    assert.equal(second.replayed, 0);
    for (const [hash, n] of counts) assert.equal(n, 1, `handler ran ${n} times for ${hash}`);
    // Informational entries and settled intents were never handed to a handler.
    const settled = entries.filter((e) => !pending.includes(e));
    for (const e of settled) assert.ok(!counts.has(e.entry_hash));
  } finally {
    await cleanup();
  }
});

function runChild(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const c = spawn(process.execPath, [CHILD, ...args], { env: { ...process.env, ...env } });
      let stdout = "";
      let stderr = "";
      c.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      c.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      c.on("error", reject);
      c.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    },
  );
}

test("SIGKILL between a handler and its marker, then restart: each entry's effect happens once", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const all = expectedPending(await crashedRun(ws, "run-old", 23));
    const pending = all.filter((e) => HANDLED.has(e.decision_type));
    assert.ok(pending.length >= 5);
    const effects = path.join(dir, "effects");
    const killed = await runChild([ws.root, "run-b1", effects], { KILL_AFTER: "3" });
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    const store = await IdempotencyStore.open(ws);
    assert.equal(store.size, 2, "the third handler ran but its marker was never written");
    assert.equal(await readClosedMarker(ws, "run-old"), undefined);

    const restarted = await runChild([ws.root, "run-b2", effects]);
    assert.equal(restarted.code, 0, restarted.stderr);
    const summary = JSON.parse(restarted.stdout);
    // run-b1 (killed) is a previous run too; it holds no intents.
    assert.deepEqual(summary.runs.sort(), ["run-b1", "run-old"]);
    assert.equal(summary.found, all.length);
    assert.equal(summary.skipped_idempotent, 2);
    assert.equal(summary.replayed, pending.length - 2);
    assert.equal(summary.failed, all.length - pending.length);
    assert.equal(summary.unhandled, all.length - pending.length);
    assert.ok(await readClosedMarker(ws, "run-old"));

    // Effects: exactly one per pending intent. Calls: once each, twice for the one killed entry.
    assert.deepEqual((await readdir(effects)).sort(), pending.map((e) => e.entry_hash).sort());
    const calls = new Map<string, number>();
    for (const h of (await readFile(path.join(dir, "invocations.log"), "utf8")).trim().split("\n")) {
      calls.set(h, (calls.get(h) ?? 0) + 1);
    }
    assert.equal(calls.get(pending[2].entry_hash), 2);
    for (const e of pending) if (e !== pending[2]) assert.equal(calls.get(e.entry_hash), 1);

    // The summary is in the current run's WAL; a third start finds nothing to do.
    const wal: WalEntry[] = [];
    for await (const { entry } of readWalEntries(ws.walFile("run-b2"))) wal.push(entry);
    assert.equal(wal[0].decision_type, "wal_replay_completed");
    assert.equal(wal[0].output.replayed, pending.length - 2);
    const third = await runChild([ws.root, "run-b3", effects]);
    assert.equal(JSON.parse(third.stdout).found, 0);
    assert.equal(
      (await readFile(path.join(dir, "invocations.log"), "utf8")).trim().split("\n").length,
      pending.length + 1,
    );
  } finally {
    await cleanup();
  }
});

test("stale intents are reported and kept out, failures leave the run open, the current run is never replayed", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const staleEntries = await crashedRun(ws, "run-stale", 31, Date.now() / 1000 - 3 * 3600);
    const freshEntries = await crashedRun(ws, "run-fresh", 32);
    const current = expectedPending(await crashedRun(ws, "run-current", 33)).filter((e) =>
      HANDLED.has(e.decision_type),
    );
    const stale = expectedPending(staleEntries);
    const freshAll = expectedPending(freshEntries);
    const fresh = freshAll.filter((e) => HANDLED.has(e.decision_type));
    const unhandled = freshAll.length - fresh.length;
    const counts = new Map<string, number>();
    const handlers = countingHandlers(counts);
    handlers.task_claimed = async () => {
      throw new Error("agent host unreachable");
    };
    const writer = await WalWriter.open(ws, "run-current");
    const s = await replayWal(ws, { currentRunId: "run-current", handlers, writer });
    await writer.close();
    assert.deepEqual(s.runs, ["run-stale", "run-fresh"]);
    assert.equal(s.stale, stale.length);
    assert.equal(s.stale_entries.length, Math.min(stale.length, 100));
    assert.ok(s.stale_entries.every((e) => e.run_id === "run-stale" && e.age_s > 3600));
    const claims = fresh.filter((e) => e.decision_type === "task_claimed").length;
    assert.ok(claims > 0);
    assert.equal(s.failed, claims + unhandled);
    assert.equal(s.unhandled, unhandled);
    assert.ok(s.failures.some((f) => /agent host unreachable/.test(f.error)));
    assert.equal(s.replayed, fresh.length - claims);
    assert.equal(s.found, stale.length + freshAll.length);
    assert.deepEqual(s.closed, ["run-stale"], "a run with failures stays open for the next start");
    for (const e of stale) assert.ok(!counts.has(e.entry_hash), "a stale intent is never executed");
    // The durable record of the replay lists the stale and failed entries.
    let last: WalEntry | undefined;
    for await (const { entry } of readWalEntries(ws.walFile("run-current"))) last = entry;
    assert.equal(last?.decision_type, "wal_replay_completed");
    assert.equal(last?.output.stale, stale.length);
    assert.equal(last?.output.failed, claims + unhandled);

    for (const e of current) assert.ok(!counts.has(e.entry_hash), "the current run is never replayed");
    // Next start with a working handler: the failed ones run (and run-current's, now a previous run).
    const again = await replayWal(ws, { currentRunId: "run-next", handlers: countingHandlers(counts) });
    assert.equal(again.replayed, claims + current.length);
    assert.equal(again.skipped_idempotent, fresh.length - claims);
    assert.deepEqual(again.closed.sort(), ["run-current", "run-fresh"]);
    for (const n of counts.values()) assert.equal(n, 1);
  } finally {
    await cleanup();
  }
});

test("the staleness window is configurable (option, then $BERNSTEIN_REPLAY_STALE_AFTER seconds)", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const pending = expectedPending(await crashedRun(ws, "run-old", 41, Date.now() / 1000 - 3 * 3600));
    const handled = pending.filter((e) => HANDLED.has(e.decision_type)).length;
    const counts = new Map<string, number>();
    const opts = { currentRunId: "run-now", handlers: countingHandlers(counts), closeReplayed: false };
    assert.equal((await replayWal(ws, opts)).stale, pending.length);
    assert.equal((await replayWal(ws, { ...opts, staleAfterMs: 4 * 3600_000 })).replayed, handled);
    const before = process.env.BERNSTEIN_REPLAY_STALE_AFTER;
    try {
      process.env.BERNSTEIN_REPLAY_STALE_AFTER = "60";
      assert.equal((await replayWal(ws, opts)).skipped_idempotent, handled, "executed ones are never stale");
      process.env.BERNSTEIN_REPLAY_STALE_AFTER = "soon";
      await assert.rejects(replayWal(ws, opts), /BERNSTEIN_REPLAY_STALE_AFTER/);
    } finally {
      if (before === undefined) delete process.env.BERNSTEIN_REPLAY_STALE_AFTER;
      else process.env.BERNSTEIN_REPLAY_STALE_AFTER = before;
    }
  } finally {
    await cleanup();
  }
});
