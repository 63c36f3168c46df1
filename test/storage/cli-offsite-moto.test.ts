/**
 * The off-site S3 round trip against a second real S3 implementation, moto (the others run on
 * s3rver): `dr backup --to-dir s3://` of an archive over one part (multipart), `dr list`,
 * `dr restore --from s3://`. Skipped, saying why, where `moto_server` is not installed.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { makeSmallWorkspace, restoreEventFile, snapshotTree } from "../dr/support/workspace.js";
import { sha } from "../dr/support/craft.js";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { motoMissing } from "./support/moto.js";
import { startS3Harness, type S3Harness } from "./support/s3-harness.js";

const MOTO_MISSING = motoMissing();
const BUCKET = "dr-offsite-moto";
if (MOTO_MISSING) process.stdout.write(`# skipped: ${MOTO_MISSING}\n`);

describe("dr backup/list/restore with s3:// against moto", { skip: MOTO_MISSING }, () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET], server: "moto" });
    scratch = await scratchDir("bernstein-offsite-moto-");
  });
  after(async () => {
    await h?.close();
    await scratch?.cleanup();
  });

  it("backup --to-dir s3:// (multipart), list, restore --from s3://: the same files and modes, no upload left", async () => {
    // 12 MiB of random bytes: the archive is over one 8 MiB part.
    const { ws } = await makeSmallWorkspace(scratch.dir, { bigBytes: 12 * 1024 * 1024 });
    const env = {
      ...envFor(scratch.dir),
      ...h.env,
      BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "copies"),
    };
    const at = `s3://${BUCKET}/site/`;
    // Before the backup, which then appends its audit event and catalogue row to the workspace.
    const original = [...snapshotTree(ws.root)].sort();
    const b = await runCli(["--sdd", ws.root, "--json", "dr", "backup", "--to-dir", at], { env });
    assert.equal(b.code, 0, b.stderr);
    const backup = JSON.parse(b.stdout);
    assert.match(backup.path, /^s3:\/\/dr-offsite-moto\/site\/bernstein-backup-\d{8}T\d{6}Z\.tar\.gz$/);
    assert.equal(backup.verified, true);
    assert.ok(backup.size_bytes > 8 * 1024 * 1024, `archive of ${backup.size_bytes} bytes is over one part`);
    assert.equal(h.counts.get("CreateMultipartUpload"), 1);
    assert.equal(h.counts.get("UploadPart"), 2);
    assert.deepEqual(await h.pendingUploads(BUCKET), [], "ListMultipartUploads: none pending");

    const l = await runCli(["--sdd", ws.root, "--json", "dr", "list", "--at", at, "--check"], { env });
    assert.equal(l.code, 0, l.stdout + l.stderr);
    const listed = JSON.parse(l.stdout);
    assert.deepEqual(
      listed.backups.map((x: { sha256: string }) => x.sha256),
      [backup.sha256],
    );
    for (const f of listed.check) assert.equal(f.status, "ok", JSON.stringify(f));

    const target = path.join(scratch.dir, "restored", ".sdd");
    const r = await runCli(["--sdd", target, "--json", "dr", "restore", "--from", backup.path], { env });
    assert.equal(r.code, 0, r.stderr);
    const restored = snapshotTree(target);
    restored.delete("runtime/restored-from.json");
    // And the row of the backup it was restored from, which the archive could not hold.
    const rows = readFileSync(path.join(target, "runs", "backups.jsonl"), "utf8")
      .trim()
      .split("\n");
    assert.equal(JSON.parse(rows.at(-1)!).location, backup.path);
    if (rows.length === 1) restored.delete("runs/backups.jsonl");
    else
      restored.set("runs/backups.jsonl", {
        ...restored.get("runs/backups.jsonl")!,
        sha: sha(
          rows
            .slice(0, -1)
            .map((l) => `${l}\n`)
            .join(""),
        ),
      });
    // Beyond the archive's state, the restored chain holds the restore's own dr.restore event.
    const { rel, carried } = restoreEventFile(target);
    if (carried === "") restored.delete(rel);
    else restored.set(rel, { ...restored.get(rel)!, sha: sha(carried) });
    assert.deepEqual([...restored].sort(), original);
  });
});
