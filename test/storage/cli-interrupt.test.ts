/**
 * Off-site destinations, as the CLI meets them (s3rver behind the harness proxy): an existing
 * object is not replaced without --force, and a signal part-way through an upload or a download
 * leaves no pending multipart upload, no local copy and no staging folder. The harness holds the
 * transfer open ("hold", "stall") until the test has seen the condition it signals at.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { openCatalogue } from "../../src/storage/open-store.js";
import { runCli, scratchDir, spawnCli, waitFor, type CliResult } from "../helpers.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";
import { startS3Harness, type S3Harness } from "./support/s3-harness.js";

const BUCKET = "dr-interrupt";

describe("dr backup/restore with s3:// destinations: replacing and interrupting (CLI, s3rver)", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let sdd: string;
  /** A workspace whose archive is bigger than one 8 MiB part: it goes up multipart. */
  let bigSdd: string;
  let env: Record<string, string>;
  let localCopies: string;
  const cli = (args: string[]): Promise<CliResult> => runCli(["--sdd", sdd, ...args], { env });

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-cli-interrupt-");
    const { ws, keyFile } = await makeSmallWorkspace(path.join(scratch.dir, "small"));
    sdd = ws.root;
    const big = await makeSmallWorkspace(path.join(scratch.dir, "big"), { bigBytes: 9 * 1024 * 1024 });
    bigSdd = big.ws.root;
    localCopies = path.join(scratch.dir, "local-copies");
    Object.assign(process.env, h.env); // the test reads the store too
    env = { ...h.env, BERNSTEIN_AUDIT_KEY_PATH: keyFile, BERNSTEIN_BACKUP_LOCAL_DIR: localCopies };
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });
  beforeEach(() => h.setFault(undefined));

  it("an existing object is refused (exit 6, naming it) unless --force; KEY.enc --encrypt stays KEY.enc", async () => {
    const key = `s3://${BUCKET}/same/x.tar.gz`;
    assert.equal((await cli(["dr", "backup", "--to", key])).code, 0);
    const store = await openCatalogue(`s3://${BUCKET}/same/`);
    const first = await store.head("x.tar.gz");
    const again = await cli(["dr", "backup", "--to", key]);
    assert.equal(again.code, 6, again.stderr);
    assert.match(again.stderr, /s3:\/\/dr-interrupt\/same\/x\.tar\.gz already exists.*--force/);
    assert.equal((await store.head("x.tar.gz"))!.metadata.sha256, first!.metadata.sha256);
    const forced = await cli(["dr", "backup", "--to", key, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual((await store.head("x.tar.gz"))!.metadata.sha256, first!.metadata.sha256);

    const enc = await cli(["dr", "backup", "--to", `${key}.enc`, "--encrypt", "--password", "pw"]);
    assert.equal(enc.code, 0, enc.stderr);
    assert.deepEqual(
      (await store.list()).map((o) => o.key),
      ["x.tar.gz", "x.tar.gz.enc"],
    );
  });

  it("SIGINT during a multipart upload aborts it and removes the local copy: exit 130, nothing left", async () => {
    h.setFault((op) => (op === "UploadPart" ? "hold" : undefined));
    const { child, done } = spawnCli(
      ["--sdd", bigSdd, "dr", "backup", "--to", `s3://${BUCKET}/held/x.tar.gz`],
      {
        env,
      },
    );
    await waitFor(
      "a part upload in flight",
      async () => (h.counts.get("UploadPart") ?? 0) > 0 && (await h.pendingUploads(BUCKET)).length > 0,
      { exited: done },
    );
    child.kill("SIGINT");
    const r = await done;
    h.setFault(undefined);
    assert.equal(r.code, 130, r.stderr);
    assert.match(
      r.stderr,
      /interrupted by SIGINT; removed .*the unfinished upload to s3:\/\/dr-interrupt\/held\/x\.tar\.gz/,
    );
    assert.match(r.stderr, /the local copy /);
    assert.deepEqual(await h.pendingUploads(BUCKET), [], "no pending multipart upload");
    assert.deepEqual(await (await openCatalogue(`s3://${BUCKET}/held/`)).list(), []);
    assert.deepEqual(readdirSync(localCopies), [], "no local copy, no temp file");
  });

  it("SIGTERM during a restore's download removes its staging folder and the folder it made: exit 143, the target never appears", async () => {
    const key = `s3://${BUCKET}/restore/x.tar.gz`;
    assert.equal((await cli(["dr", "backup", "--to", key])).code, 0);
    h.setFault((op) => (op === "GetObject" ? "stall" : undefined));
    const parent = path.join(scratch.dir, "restore-target");
    const target = path.join(parent, ".sdd");
    const { child, done } = spawnCli(["--sdd", target, "dr", "restore", "--from", key], { env });
    await waitFor(
      "the staging folder",
      () => existsSync(parent) && readdirSync(parent).some((n) => n.startsWith("..sdd.restore-")),
      { exited: done },
    );
    child.kill("SIGTERM");
    const r = await done;
    h.setFault(undefined);
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /interrupted by SIGTERM; removed the restore's staging folder /);
    assert.equal(existsSync(parent), false, "the folder the restore made for its target is gone too");
    assert.ok(existsSync(scratch.dir));
  });

  it("a SIGKILLed remote backup's local copy: named by dr status, removed by the next remote backup; a --keep-local copy stays", async () => {
    const copies = path.join(scratch.dir, "killed-copies");
    const killEnv = { ...env, BERNSTEIN_BACKUP_LOCAL_DIR: copies };
    const kept = await runCli(
      ["--sdd", sdd, "dr", "backup", "--to", `s3://${BUCKET}/killed/kept.tar.gz`, "--keep-local"],
      { env: killEnv },
    );
    assert.equal(kept.code, 0, kept.stderr);
    h.setFault((op) => (op === "PutObject" ? "hold" : undefined));
    const killed = spawnCli(["--sdd", sdd, "dr", "backup", "--to", `s3://${BUCKET}/killed/x.tar.gz`], {
      env: killEnv,
    });
    const left = path.join(copies, "x.tar.gz");
    // The upload has begun: the local copy is complete.
    await waitFor("the upload of the complete local copy", () => h.held.some((r) => r.op === "PutObject"), {
      exited: killed.done,
    });
    killed.child.kill("SIGKILL");
    assert.equal((await killed.done).signal, "SIGKILL");
    h.setFault(undefined);
    assert.ok(existsSync(left), "SIGKILL leaves the local copy");

    const status = await runCli(["--sdd", sdd, "--json", "dr", "status"], { env: killEnv });
    const leftovers = (JSON.parse(status.stdout) as { leftover_local_copies: { path: string }[] })
      .leftover_local_copies;
    assert.deepEqual(
      leftovers.map((c) => c.path),
      [left],
      status.stderr,
    );
    const statusText = await runCli(["--sdd", sdd, "dr", "status"], { env: killEnv });
    assert.match(
      statusText.stdout,
      /^Leftover: +the local copy .*x\.tar\.gz was left by a remote backup that never ended \(pid \d+/m,
    );

    const next = await runCli(
      ["--sdd", sdd, "--json", "dr", "backup", "--to", `s3://${BUCKET}/killed/next.tar.gz`],
      {
        env: killEnv,
      },
    );
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stderr, /removed the local copy .*x\.tar\.gz left by a remote backup that never ended/);
    assert.deepEqual((JSON.parse(next.stdout) as { removed_local_copies: string[] }).removed_local_copies, [
      left,
    ]);
    assert.deepEqual(
      readdirSync(copies),
      ["kept.tar.gz"],
      "the killed copy and its marker are gone, the kept copy stays",
    );
    const after = await runCli(["--sdd", sdd, "--json", "dr", "status"], { env: killEnv });
    assert.deepEqual(JSON.parse(after.stdout).leftover_local_copies, []);
  });
});
