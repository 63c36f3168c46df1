import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { requestSnapshot } from "../../src/dr/snapshot.js";
import { scanBacklog, addTask } from "../../src/orchestrator/tasks.js";
import { StateBuilder } from "../../src/state/reducer.js";
import { listRuns, readTailPosition, readWalEntries } from "../../src/wal/reader.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { listCompletions } from "../../src/orchestrator/wrapper.js";
import { runCli, scratchDir, waitFor } from "../helpers.js";

test("a DR backup's pause request is answered at a decision boundary: every decision whole, folders = WAL", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-snap-");
  try {
    const sdd = path.join(dir, ".sdd");
    const { workspace: ws } = await initWorkspace(sdd);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    for (let i = 0; i < 12; i++) {
      await addTask(ws, {
        id: `p${String(i).padStart(2, "0")}`,
        title: `p${i}`,
        command: `sleep 0.${1 + (i % 3)}`,
      });
    }
    const started = await runCli(
      ["--sdd", sdd, "start", "--detach", "--max-agents", "3", "--poll", "20", "--json"],
      { env },
    );
    assert.equal(started.code, 0, started.stderr);
    const runId = JSON.parse(started.stdout).run_id as string;
    let paused = 0;
    for (let round = 0; round < 3; round++) {
      const h = await requestSnapshot(ws, { ackTimeoutMs: 15_000 });
      let released = false;
      try {
        if (h.method !== "paused") {
          // The orchestrator may already have finished the backlog and stopped.
          assert.equal(h.method, "idle");
          break;
        }
        paused++;
        const pos = h.positions![runId]!;
        // The WAL up to the acknowledged position: no intent without its commit, and the
        // backlog folders are exactly the state those entries give.
        const b = new StateBuilder();
        const open = new Map<string, number>();
        for (const run of await listRuns(ws)) {
          for await (const { entry } of readWalEntries(run.file)) {
            if (run.run_id === runId && entry.seq > pos.seq) break;
            b.apply(run.run_id, entry);
            if (!entry.decision_type.startsWith("task_")) continue;
            const k = `${entry.decision_type}:${JSON.stringify(entry.inputs)}`;
            open.set(k, (open.get(k) ?? 0) + (entry.committed ? -1 : 1));
          }
        }
        assert.deepEqual(
          [...open].filter(([, n]) => n !== 0),
          [],
          `round ${round}: a decision was cut in half`,
        );
        // Nothing is decided while paused, even once a decision is due: an agent that finishes
        // during the pause leaves its completion record (collected ones were committed before the
        // acknowledgement), and its task_completed must wait for the release.
        const running = new Set(Object.keys(b.state.agent_sessions));
        const due =
          running.size === 0
            ? undefined
            : await waitFor(`round ${round}: an agent to finish during the pause`, async () =>
                (await listCompletions(ws)).find((id) => running.has(id)),
              );
        const scan = await scanBacklog(ws, ["open", "claimed", "done", "failed"]);
        for (const t of scan.tasks)
          assert.equal(t.state, b.state.tasks[t.spec.id]?.state ?? "open", `round ${round}: ${t.spec.id}`);
        assert.equal(
          (await readTailPosition(ws.walFile(runId))).last_seq,
          pos.seq,
          `round ${round}: decided while paused${due ? ` (${due} had finished)` : ""}`,
        );
        released = true;
        await h.release();
        // Released, the orchestrator goes on and makes the due decision after the pause position.
        if (due !== undefined) {
          await waitFor(`round ${round}: ${due}'s completion after the release`, async () => {
            for await (const { entry } of readWalEntries(ws.walFile(runId))) {
              const { task_id, attempt } = entry.inputs;
              if (
                entry.decision_type === "task_completed" &&
                entry.committed &&
                `${String(task_id)}#${String(attempt)}` === due
              )
                return entry.seq > pos.seq;
            }
            return false;
          });
        }
      } finally {
        if (!released) await h.release();
      }
    }
    assert.ok(paused >= 1, "at least one pause was acknowledged");
    assert.equal((await runCli(["--sdd", sdd, "stop", "--timeout", "30"], { env })).code, 0);
    const fin = await runCli(["--sdd", sdd, "start", "--until-idle", "--poll", "20", "--json"], { env });
    assert.equal(fin.code, 0, fin.stderr);
    assert.equal(JSON.parse(fin.stdout).counts.done, 12);
  } finally {
    await cleanup();
  }
});
