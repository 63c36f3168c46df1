/**
 * The WAL stamps entries with a clock that need not agree with the archiver's: a long-running
 * writer's monotonic time drifts from the wall clock, and `dr archive` runs in its own process.
 * The newest point (`--latest`) must still hold every entry the archive holds.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { WalWriter } from "../../src/wal/writer.js";
import { archivedFixture, type ArchivedFixture } from "./support/archive-workspace.js";

const RUN = "run-clock-ahead";
/** How far the writer's clock runs ahead of the archiver's. */
const AHEAD_S = 5;

describe("a writer whose clock runs ahead of the archiver's", () => {
  let a: ArchivedFixture;
  before(async () => {
    a = await archivedFixture("bernstein-clock-ahead-");
  });
  after(() => a.scratch.cleanup());

  it("--latest restores every archived entry", async () => {
    // The first cycle takes the base snapshot; the entries after it travel as segments.
    await a.archive();
    const w = await WalWriter.open(a.f.ws, RUN, { clock: () => Date.now() / 1000 + AHEAD_S });
    for (let i = 0; i < 6; i++)
      await w.append({ decision_type: "task_claimed", inputs: { task_id: `T-${i}` }, committed: true });
    await w.close();
    await a.archive();
    const restored = `${a.scratch.dir}/restored/.sdd`;
    const r = await a.f.cli(["--json", "dr", "restore", "--from", a.store, "--latest"], restored);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).wal[RUN]?.seq, 5, r.stdout);
  });
});
