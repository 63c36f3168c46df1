/**
 * The orchestrator state of a restored point is built on the way (the snapshot's state, then the
 * reducer on each WAL entry kept) instead of by a loadState reading every WAL again, unless that
 * cannot be proven equal (e.g. two runs grew); either way it is handed to the restore's finishing
 * step and written as a checkpoint, and must equal a replay of the restored WALs from genesis.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { restoreToPoint, type RestorePoint } from "../../src/archive/restore-point.js";
import { newestValidCheckpoint, writeCheckpoint } from "../../src/checkpoint/checkpoint.js";
import { loadState } from "../../src/checkpoint/load-state.js";
import type { JsonObject } from "../../src/json/object.js";
import type { OrchestratorState } from "../../src/state/reducer.js";
import { parseCatalogueLocation } from "../../src/storage/location.js";
import { storeFor } from "../../src/storage/open-store.js";
import { WalWriter } from "../../src/wal/writer.js";
import { Workspace } from "../../src/workspace/layout.js";
import { archivedFixture, type ArchiveFixture, type ArchivedFixture } from "./support/archive-workspace.js";

const RUN_A = "run-a";
const RUN_B = "run-b";

type Step = [decision: string, inputs: JsonObject, committed: boolean, output?: JsonObject];

async function append(f: ArchiveFixture, runId: string, steps: Step[]) {
  const w = await WalWriter.open(f.ws, runId);
  try {
    for (const [decision_type, inputs, committed, output] of steps)
      await w.append({ decision_type, inputs, committed, ...(output ? { output } : {}) });
  } finally {
    await w.close();
  }
}

/** A task's life: created, claimed (intent then commit), spawned, then completed or failed. */
const life = (id: string, end: "task_completed" | "task_failed", cost: number): Step[] => [
  ["task_created", { task: { id, title: `task ${id}`, priority: 2, timeout_s: 1.5 } }, true],
  ["task_claimed", { task_id: id, attempt: 1 }, false],
  ["task_claimed", { task_id: id, attempt: 1 }, true],
  ["task_spawn_confirmed", { task_id: id, attempt: 1 }, true],
  ["tick_start", { n: 1 }, true],
  [
    end,
    { task_id: id, attempt: 1 },
    true,
    { cost_usd: cost, input_tokens: 10, output_tokens: 5, model: "m" },
  ],
];

describe("point restore: the state built on the way", () => {
  let fx: ArchivedFixture;

  before(async () => {
    fx = await archivedFixture("bernstein-restore-state-");
    const { f, archive } = fx;
    // The snapshot: T-1 done, with a checkpoint inside its life, so the state starts from it.
    await append(f, RUN_A, life("T-1", "task_completed", 0.25).slice(0, 4));
    await writeCheckpoint(f.ws, (await loadState(f.ws)).state);
    await append(f, RUN_A, life("T-1", "task_completed", 0.25).slice(4));
    await archive();
    // Segments: T-2 failed and T-3 claimed in run-a (seq 6-14), then T-4 created in run-b.
    await append(f, RUN_A, [
      ...life("T-2", "task_failed", 0.5),
      ...life("T-3", "task_completed", 1).slice(0, 3),
    ]);
    await archive();
    await append(f, RUN_B, life("T-4", "task_completed", 2).slice(0, 1));
    await archive();
  });
  after(async () => fx.scratch.cleanup());

  async function restore(name: string, point: RestorePoint): Promise<OrchestratorState> {
    const store = await storeFor(parseCatalogueLocation(fx.store), {});
    const root = path.join(fx.scratch.dir, name, ".sdd");
    let built: OrchestratorState | undefined;
    await restoreToPoint(store, point, root, {
      source: fx.store,
      auditKeyPath: fx.f.env.BERNSTEIN_AUDIT_KEY_PATH,
      finish: async (_root, state) => void (built = state),
    });
    assert.ok(built, "the finishing step got the state");
    // The state of the restored WALs replayed from genesis, and the checkpoint the next load starts from.
    const ws = new Workspace(root);
    assert.deepEqual(built, (await loadState(ws, { fromGenesis: true })).state);
    const { valid } = await newestValidCheckpoint(ws);
    assert.deepEqual(valid?.checkpoint.wal_position, built.wal_position, "a checkpoint at the point");
    const loaded = await loadState(ws);
    assert.equal(loaded.checkpoint?.id, valid!.id);
    assert.deepEqual(loaded.state, built);
    return built;
  }

  for (const [name, seq] of [
    ["inside T-3's claim (an open intent)", 13],
    ["after T-3's claim", 14],
  ] as const)
    it(`${name}: equals a replay of the restored workspace, and is its checkpoint`, async () => {
      const built = await restore(`at-${seq}`, { kind: "seq", run: RUN_A, seq });
      assert.deepEqual(built.wal_position?.seq, seq);
      assert.deepEqual(Object.keys(built.tasks).sort(), ["T-1", "T-2", "T-3"]);
    });

  it("two runs grew after the snapshot: the state is loaded from the restored workspace", async () => {
    const built = await restore("latest", { kind: "latest" });
    assert.deepEqual(Object.keys(built.tasks).sort(), ["T-1", "T-2", "T-3", "T-4"]);
  });
});
