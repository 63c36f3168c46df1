/**
 * "Objects written twice are identical" where a name used to be reused with other bytes:
 *  - a real `dr archive` SIGKILLed after its base snapshot is stored and while the snapshot's
 *    index is being written (the S3-compatible server holds that PUT unanswered): the restart
 *    must not store other bytes under a name the store already held; the interrupted snapshot
 *    goes, the archive checks clean and restores to its points;
 *  - an encrypted segment whose put succeeded in the store although its answer was lost: the
 *    next cycle sends the same sealing, not a new one of the same plaintext.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { writeFile } from "node:fs/promises";
import { Archiver } from "../../src/archive/archiver.js";
import { readObject } from "../../src/archive/catalog.js";
import { parseArchiveKey } from "../../src/archive/names.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import type { BackupStore } from "../../src/storage/store.js";
import { spawnCli, waitFor } from "../helpers.js";
import type { S3Harness } from "../storage/support/s3-harness.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const BUCKET = "wal-archive-rewrite";
const RUN = "run-rewrite";
const remoteOf = (h: S3Harness): string[] => ["--endpoint", h.endpoint, "--retries", "0"];

/** Every object of the store: name → sha256 of its bytes. */
async function objectHashes(store: BackupStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const o of await store.list(""))
    out.set(
      o.key,
      createHash("sha256")
        .update(await readObject(store, o.key))
        .digest("hex"),
    );
  return out;
}

/** Fails when a name seen in an earlier observation now holds other bytes. */
function assertNoNameRewritten(seen: Map<string, string>, now: Map<string, string>, when: string): void {
  for (const [name, sha] of now) {
    const before = seen.get(name);
    if (before !== undefined) assert.equal(sha, before, `${when}: ${name} rewritten with other bytes`);
    seen.set(name, sha);
  }
}

describe("archive objects written twice are identical", () => {
  let s: S3ArchiveSetup;
  let h: S3Harness;
  let f: ArchiveFixture;
  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-archive-rewrite-");
    ({ h, f } = s);
  });
  after(async () => {
    await s.close();
  });

  it("killed between a snapshot and its index: the restart stores no other bytes under a stored name", async () => {
    const url = `s3://${BUCKET}/site/`;
    const remote = remoteOf(h);
    const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
    await appendDecisions(f.ws, RUN, 10);
    let indexHeld = false;
    h.setFault((op, _nth, key) => {
      if (op !== "PutObject" || parseArchiveKey(key.replace(/^site\//, ""))?.kind !== "snapshot-index")
        return undefined;
      indexHeld = true;
      return "hold";
    });
    const { child, done } = spawnCli(
      ["--sdd", f.sdd, "dr", "archive", "--to", url, "--interval", "10ms", ...remote],
      { env: f.env, cwd: s.dir },
    );
    await waitFor("the snapshot index's PUT", () => indexHeld, { exited: done });
    child.kill("SIGKILL");
    assert.equal((await done).signal, "SIGKILL");
    h.setFault(undefined);

    const seen = new Map<string, string>();
    const killed = await objectHashes(store);
    const snapshots = [...killed.keys()].filter((k) => parseArchiveKey(k)?.kind === "snapshot");
    assert.equal(snapshots.length, 1, `the snapshot archive is stored: ${[...killed.keys()].join(", ")}`);
    assertNoNameRewritten(seen, killed, "killed");

    // New decisions make a retaken snapshot differ from the stored one (as any later moment does).
    await appendDecisions(f.ws, RUN, 10, 10);
    const again = await f.cli(["--json", "dr", "archive", "--to", url, "--once", ...remote]);
    assert.equal(again.code, 0, again.stderr);
    const restarted = await objectHashes(store);
    assertNoNameRewritten(seen, restarted, "restarted");
    assert.ok(
      !restarted.has(snapshots[0]!),
      "the interrupted snapshot is deleted once a later one is indexed",
    );

    await appendDecisions(f.ws, RUN, 5, 20);
    assert.equal((await f.cli(["dr", "archive", "--to", url, "--once", ...remote])).code, 0);
    assertNoNameRewritten(seen, await objectHashes(store), "resumed");

    const list = await f.cli(["--json", "dr", "archive-list", "--from", url, "--check", ...remote]);
    assert.equal(list.code, 0, list.stdout + list.stderr);
    assert.equal(JSON.parse(list.stdout).generations.length, 1, list.stdout);
    for (const [point, seq] of [
      [["--latest"], 24],
      [["--at-seq", `${RUN}:22`], 22],
    ] as const) {
      const sdd = path.join(s.dir, `restored-${seq}`, ".sdd");
      const r = await f.cli(["--json", "dr", "archive-restore", "--from", url, ...point, ...remote], sdd);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).wal[RUN].seq, seq);
      const v = await f.cli(["wal", "verify"], sdd);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    }
  });

  it("an encrypted segment stored although its put's answer was lost is sent again as it was", async () => {
    const url = `s3://${BUCKET}/sealed/`;
    const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
    const g = await archiveFixture(path.join(s.dir, "sealed"), h.env);
    const password = "correct horse battery staple";
    const archiver = new Archiver({
      store,
      ws: g.ws,
      intervalMs: 1000,
      snapshotIntervalMs: Number.MAX_SAFE_INTEGER,
      password,
      kdfIterations: 1000,
    });
    await appendDecisions(g.ws, RUN, 5);
    assert.ok(await archiver.step(), archiver.health.snapshot().last_error ?? "");
    await appendDecisions(g.ws, RUN, 5, 5);
    // The first segment's put is stored but its answer lost, and the store's clean-up of the
    // failed put fails too: the store keeps the segment the archiver believes unsent.
    let lost = 0;
    const segment = (key: string) => parseArchiveKey(key.replace(/^sealed\//, ""))?.kind === "segment";
    h.setFault((op, _nth, key) => {
      if (op === "DeleteObject") return 503;
      return op === "PutObject" && segment(key) && lost++ === 0 ? "lost" : undefined;
    });
    assert.equal(await archiver.step(), undefined, "the cycle saw its put fail");
    h.setFault(undefined);
    const seen = new Map<string, string>();
    const failed = await objectHashes(store);
    assert.ok(
      [...failed.keys()].some(segment),
      `the store holds the segment all the same: ${[...failed.keys()].join(", ")}`,
    );
    assertNoNameRewritten(seen, failed, "answer lost");
    assert.ok(await archiver.step(), archiver.health.snapshot().last_error ?? "");
    assertNoNameRewritten(seen, await objectHashes(store), "sent again");

    const pw = path.join(s.dir, "sealed", "pw");
    await writeFile(pw, password + "\n", { mode: 0o600 });
    const sdd = path.join(s.dir, "sealed-restored", ".sdd");
    const r = await g.cli(
      ["--json", "dr", "archive-restore", "--from", url, "--latest", "--password-file", pw, ...remoteOf(h)],
      sdd,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).wal[RUN].seq, 9);
  });
});
