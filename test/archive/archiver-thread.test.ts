/**
 * The archiver thread of `start --archive-to` (archiver-thread.ts) when the thread dies: every
 * commit gate waiting fails with ArchiverStopped (a `--sync` decision is never acted on without
 * the store), later calls fail at once, and the death is reported once. The thread here dies at
 * its start (the store's endpoint is refused where the thread opens it).
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ArchiverStopped } from "../../src/archive/archiver.js";
import { ArchiverThread } from "../../src/archive/archiver-thread.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir, waitFor } from "../helpers.js";

describe("archiver thread", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    scratch = await scratchDir("bernstein-archiver-thread-");
  });
  after(async () => scratch.cleanup());

  it("a thread that dies fails the gates waiting and every later one, and is reported once", async () => {
    const { workspace: ws } = await initWorkspace(path.join(scratch.dir, "ws", ".sdd"));
    const thread = new ArchiverThread({
      sddDir: ws.root,
      to: "s3://bucket/prefix/",
      s3: { endpoint: "ftp://127.0.0.1:1" },
      intervalMs: 100,
      snapshotIntervalMs: 86_400_000,
      sync: true,
    });
    const fatal: unknown[] = [];
    thread.start((err) => fatal.push(err));
    const at = (seq: number) => ({ runId: "run-a", seq, entry_hash: "0".repeat(64) });
    const gate = thread.shippedThrough(at(0));
    await assert.rejects(gate, ArchiverStopped);
    await waitFor("the death reported", () => fatal.length > 0);
    assert.match(String(fatal[0]), /not an http\(s\) URL/);
    await assert.rejects(thread.shippedThrough(at(1)), ArchiverStopped);
    await assert.rejects(thread.step(), ArchiverStopped);
    await thread.stop();
    assert.equal(fatal.length, 1);
  });
});
