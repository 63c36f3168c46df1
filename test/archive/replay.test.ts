/**
 * Checkpoints written after a base snapshot are not archived (docs/formats.md "Checkpoints are
 * not archived"): a point restored 10,000 decisions after its snapshot rebuilds the state by
 * replaying the WAL from the snapshot's checkpoint, and shows what the source showed with its
 * own, newer checkpoint.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { scratchDir } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  statusState,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const RUN = "run-replay";
const AFTER_SNAPSHOT = 10_000;

describe("a point restored long after its snapshot", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-replay-");
    f = await archiveFixture(scratch.dir);
  });
  after(async () => scratch.cleanup());

  it(`${AFTER_SNAPSHOT} decisions after the snapshot: status --json as the source's, doctor passes`, async () => {
    const store = path.join(scratch.dir, "store");
    await appendDecisions(f.ws, RUN, 10);
    const first = await f.cli(["--json", "checkpoint"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    await appendDecisions(f.ws, RUN, AFTER_SNAPSHOT, 10);
    const cp = await f.cli(["checkpoint"]);
    assert.equal(cp.code, 0, cp.stderr);
    const shipped = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(shipped.code, 0, shipped.stderr);
    const then = await f.cli(["--json", "status"]);
    assert.equal(then.code, 0, then.stderr);

    const restored = path.join(scratch.dir, "restored", ".sdd");
    const r = await f.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], restored);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).wal[RUN].seq, AFTER_SNAPSHOT + 9);
    const now = await f.cli(["--json", "status"], restored);
    assert.equal(now.code, 0, now.stderr);
    assert.deepEqual(statusState(now.stdout), statusState(then.stdout));
    const checkpoints = [now, then].map(
      (s) => (JSON.parse(s.stdout) as { checkpoint: { id: string } }).checkpoint.id,
    );
    assert.notEqual(
      checkpoints[0],
      checkpoints[1],
      "the restored point holds the snapshot's checkpoint, not the newer one",
    );
    const doctor = await f.cli(["doctor"], restored);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  });
});
