/**
 * The archiver's status file describes a process of one workspace on one host. A backup taken
 * while the archiver runs leaves it out; a copy of it in another folder (restored from an older
 * backup that held it, or a workspace copied whole) is not taken for that folder's archiver: the
 * copy is not refused an archiver of its own, and `dr status` there shows no archive.
 */
import assert from "node:assert/strict";
import { cp } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { scratchDir, waitFor } from "../helpers.js";
import { killLeftArchivers, spawnArchiver, type RunningArchiver } from "./support/archive-bursts.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-status";

describe("the archiver's status in another folder", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let archiver: RunningArchiver;

  before(async () => {
    scratch = await scratchDir("bernstein-status-elsewhere-");
    f = await archiveFixture(path.join(scratch.dir, "ws"));
    await appendDecisions(f.ws, RUN, 3);
    archiver = spawnArchiver(f, path.join(scratch.dir, "store"), []);
    await waitFor(
      "the archiver's first cycle",
      async () => (await readArchiveStatus(f.sdd))?.wal_shipped_seq?.[RUN] === 2,
      { exited: archiver.done },
    );
  });
  after(async () => {
    killLeftArchivers();
    await scratch.cleanup();
  });

  it("a backup leaves the running archiver's status out", async () => {
    const plan = await f.cli([
      "--json",
      "dr",
      "backup",
      "--to",
      path.join(scratch.dir, "b.tar.gz"),
      "--dry-run",
    ]);
    assert.equal(plan.code, 0, plan.stderr);
    const doc = JSON.parse(plan.stdout) as { excluded: { path: string }[] };
    assert.ok(
      doc.excluded.some((e) => e.path === "runtime/archive-status.json"),
      plan.stdout,
    );
  });

  it("a copied workspace holding the status file is not refused an archiver, and shows none", async () => {
    const copy = path.join(scratch.dir, "copy", ".sdd");
    await cp(f.sdd, copy, { recursive: true });
    const shown = await f.cli(["--json", "dr", "status"], copy);
    assert.equal(shown.code, 0, shown.stderr);
    const st = JSON.parse(shown.stdout) as { archive: unknown; rpo_estimate: { basis: string } };
    assert.equal(st.archive, null, shown.stdout);
    assert.doesNotMatch(st.rpo_estimate.basis, /WAL archive/);

    const own = await f.cli(["dr", "archive", "--to", path.join(scratch.dir, "copy-store"), "--once"], copy);
    assert.equal(own.code, 0, own.stderr);
    // The original is still refused a second archiver while its own runs.
    const second = await f.cli(["dr", "archive", "--to", path.join(scratch.dir, "other"), "--once"]);
    assert.equal(second.code, 3, second.stderr);
    assert.equal((await archiver.stop()).code, 143);
  });
});
