/** What rekey tests read back of an `.age` archive, and what they check after a rotation. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { parseObjectLocation } from "../../../src/storage/location.js";
import { openObject } from "../../../src/storage/open-store.js";
import { makeS3Client } from "../../../src/storage/s3-store.js";
import { runCli, type CliResult } from "../../helpers.js";

/** The whole object or file at a location. */
export async function bytesOf(location: string): Promise<Buffer> {
  const { store, key } = await openObject(location);
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The bytes after the age header (its MAC line, "--- ..."). */
export const payloadOf = (b: Buffer): Buffer => b.subarray(b.indexOf(0x0a, b.indexOf("\n--- ") + 1) + 1);

export const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/**
 * Another writer's object, put at an `s3://` location: `old` with its last byte changed (the same
 * size, so only the ETag tells the two apart). Returns the put's promise and the bytes.
 */
export function replaceObject(location: string, old: Buffer): { put: Promise<unknown>; bytes: Buffer } {
  const where = parseObjectLocation(location);
  assert.equal(where.kind, "s3");
  const bytes = Buffer.from(old);
  bytes[bytes.length - 1]! ^= 0xff;
  const put = makeS3Client().send(
    new PutObjectCommand({ Bucket: where.bucket, Key: where.key, Body: bytes }),
  );
  return { put, bytes };
}

/** `dr restore --from location --identity-file identity` into a new folder under `dir`. */
export function restoreWithIdentity(
  dir: string,
  env: Record<string, string | undefined>,
  location: string,
  identity: string,
): Promise<CliResult> {
  const target = path.join(dir, `restored-${Math.random().toString(36).slice(2)}`, ".sdd");
  const restore = ["dr", "restore", "--from", location, "--identity-file", identity];
  return runCli(["--sdd", target, "--json", ...restore], { env });
}

/**
 * After rekeys that left `kept` and not `removed` able to open the archive at `location` (now
 * `bytes`): it restores with `kept`, `removed` is refused (exit 4), `dr list --at at --check` is
 * clean and the location's record names the new bytes.
 */
export async function assertRotated(r: {
  cli: (...args: string[]) => Promise<CliResult>;
  restore: (location: string, identity: string) => Promise<CliResult>;
  location: string;
  at: string;
  kept: string;
  removed: string;
  bytes: Buffer;
}): Promise<void> {
  const ok = await r.restore(r.location, r.kept);
  assert.equal(ok.code, 0, ok.stderr);
  const refused = await r.restore(r.location, r.removed);
  assert.equal(refused.code, 4, refused.stderr);
  assert.match(refused.stderr, /none of the 1 identities opens this archive/);
  const check = await r.cli("--json", "dr", "list", "--at", r.at, "--check");
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const findings = JSON.parse(check.stdout).check;
  assert.ok(findings.length >= 1, check.stdout);
  for (const f of findings) assert.equal(f.status, "ok", JSON.stringify(f));
  const listed = JSON.parse((await r.cli("--json", "dr", "list", "--at", r.at)).stdout).backups;
  assert.equal(listed.at(-1).sha256, sha256(r.bytes), "the record names the new bytes");
  assert.equal(listed.at(-1).size_bytes, r.bytes.length);
}
