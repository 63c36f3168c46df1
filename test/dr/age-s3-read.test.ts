/**
 * `.age` archives read from s3:// (the harness's s3rver): restore and verify start the file key
 * from the object's first bytes as they do for a local file, and fail the same ways: a wrong
 * identity exit 4 naming the stanzas, an altered header exit 5, and nothing restored either time.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { makeS3Client } from "../../src/storage/s3-store.js";
import { envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";
import { keyPair } from "./support/age-keys.js";
import { bytesOf } from "./support/age-objects.js";
import { makeSmallWorkspace } from "./support/workspace.js";

const BUCKET = "dr-age-read";

describe("dr restore and dr verify of .age archives from s3://", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let env: Record<string, string | undefined>;
  let sdd: string;
  let location: string;
  let pq: { file: string; recipient: string };
  let other: { file: string; recipient: string };
  const cli = (...args: string[]): Promise<CliResult> => runCli(args, { env });
  const restore = (from: string, identity: string, target: string): Promise<CliResult> =>
    cli("--sdd", target, "--json", "dr", "restore", "--from", from, "--identity-file", identity);

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-age-s3-read-");
    Object.assign(process.env, h.env);
    env = { ...envFor(scratch.dir), ...h.env, BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "copies") };
    const { ws } = await makeSmallWorkspace(scratch.dir);
    sdd = ws.root;
    pq = await keyPair(scratch.dir, "pq.txt", true);
    other = await keyPair(scratch.dir, "other.txt");
    const b = await cli(
      "--sdd",
      sdd,
      "--json",
      "dr",
      "backup",
      "--to-dir",
      `s3://${BUCKET}/b`,
      "--recipient",
      pq.recipient,
    );
    assert.equal(b.code, 0, b.stderr);
    location = JSON.parse(b.stdout).path as string;
    assert.match(location, /^s3:\/\/.*\.tar\.gz\.age$/);
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });

  it("restores and verifies with the hybrid identity", async () => {
    const target = path.join(scratch.dir, "restored", ".sdd");
    const r = await restore(location, pq.file, target);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).encrypted, true);
    const v = await cli("--json", "dr", "verify", "--from", location, "--identity-file", pq.file);
    assert.equal(v.code, 0, v.stderr);
  });

  it("a wrong identity is exit 4 naming the stanzas; nothing restored", async () => {
    const target = path.join(scratch.dir, "wrong", ".sdd");
    const r = await restore(location, other.file, target);
    assert.equal(r.code, 4, r.stderr);
    assert.match(
      r.stderr,
      /none of the 1 identities opens this archive; it is encrypted to recipients 1 mlkem768x25519 stanza/,
    );
    assert.equal(existsSync(path.dirname(target)) && existsSync(target), false);
    const v = await cli("dr", "verify", "--from", location, "--identity-file", other.file);
    assert.equal(v.code, 4, v.stderr);
  });

  it("an altered header is exit 5; nothing restored", async () => {
    const bytes = await bytesOf(location);
    const mac = bytes.indexOf("\n--- ") + 6;
    bytes[mac] = bytes[mac] === 0x41 ? 0x42 : 0x41;
    await makeS3Client().send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "altered/a.tar.gz.age", Body: bytes }),
    );
    const target = path.join(scratch.dir, "altered", ".sdd");
    const r = await restore(`s3://${BUCKET}/altered/a.tar.gz.age`, pq.file, target);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /the header was altered: its MAC does not match/);
    assert.equal(existsSync(target), false);
  });
});
