/**
 * A point-in-time restore whose segment download stalls (s3rver behind the harness proxy: the
 * answer's headers and half its body, then nothing), or whose snapshot or segment GET the store
 * takes and never answers: SIGINT or SIGTERM stops it promptly (exit 130/143, one line, the
 * staging folder and the folders made for the target gone). And a restore that fails or is interrupted after its snapshot was
 * extracted leaves no copy of the snapshot's audit key beside the target; one that succeeds keeps it.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, beforeEach, describe, it } from "node:test";
import { spawnCli, waitFor, type CliResult } from "../helpers.js";
import { appendDecisions } from "./support/archive-workspace.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";

const BUCKET = "pit-interrupt";
const RUN = "run-stalled-segment";
/** How long a stopped restore may take to exit: far more than it needs, far less than for ever. */
const PROMPTLY_MS = 30_000;
const PLAIN = `s3://${BUCKET}/plain/`;
const isSegment = (key: string): boolean => key.includes(".seg.");
const isSnapshot = (key: string): boolean => key.includes(".snap-") && !key.includes(".idx.");
const SEALED = `s3://${BUCKET}/sealed/`;

describe("a point-in-time restore interrupted while a segment download stalls (CLI, s3rver)", () => {
  let s: S3ArchiveSetup;
  let pw: string;
  /** A different audit key than the one the snapshot carries, as the target's host holds it. */
  let otherKey: string;

  /** Archives the workspace to `url` twice, decisions before each: a snapshot, then segments. */
  let made = 0;
  const archiveTwice = async (url: string, extra: string[]): Promise<void> => {
    for (let i = 0; i < 2; i++) {
      await appendDecisions(s.f.ws, RUN, 5, made);
      made += 5;
      const r = await s.f.cli(["dr", "archive", "--to", url, "--once", ...extra]);
      assert.equal(r.code, 0, r.stderr);
    }
  };

  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-pit-stall-");
    pw = path.join(s.dir, "pw");
    await writeFile(pw, "stalled horse\n", { mode: 0o600 });
    otherKey = path.join(s.dir, "other-host", "audit.key");
    await mkdir(path.dirname(otherKey), { recursive: true });
    await writeFile(otherKey, "another host's key\n", { mode: 0o600 });
    await archiveTwice(PLAIN, []);
    await archiveTwice(SEALED, ["--encrypt", "--password-file", pw]);
  });
  after(async () => s.close());
  beforeEach(() => s.h.setFault(undefined));

  /**
   * Restores `url` --latest into a fresh target with every segment GET stalled, sends `signal`
   * once a segment download is under way, and returns what the restore did.
   */
  async function interruptStalled(
    url: string,
    name: string,
    signal: "SIGINT" | "SIGTERM",
    extra: string[],
    /** "stall" (headers, half the body, then nothing) or "hold" (no answer at all) of these GETs. */
    held: { fault: "stall" | "hold"; of: (key: string) => boolean } = { fault: "stall", of: isSegment },
  ): Promise<{ r: CliResult; made: string; target: string }> {
    const made = path.join(s.dir, name);
    // Into `made`/a/.sdd, or `made`/.sdd when `made` exists.
    const target = existsSync(made) ? path.join(made, ".sdd") : path.join(made, "a", ".sdd");
    let stalled = 0;
    s.h.setFault((op, _nth, key) => {
      if (op !== "GetObject" || !held.of(key)) return undefined;
      stalled++;
      return held.fault;
    });
    const { child, done } = spawnCli(
      ["--sdd", target, "dr", "restore", "--from", url, "--latest", ...extra],
      { env: s.f.env, cwd: s.dir },
    );
    await waitFor(`a download ${held.fault === "hold" ? "held" : "stalled"}`, () => stalled > 0, {
      exited: done,
    });
    child.kill(signal);
    const deadline = new AbortController();
    const r = await Promise.race([
      done,
      delay(PROMPTLY_MS, undefined, { signal: deadline.signal }).catch(() => undefined),
    ]);
    deadline.abort();
    s.h.setFault(undefined);
    if (!r) {
      child.kill("SIGKILL");
      await done;
      assert.fail(`${signal} did not stop the restore within ${PROMPTLY_MS} ms (a ${held.fault} download)`);
    }
    return { r, made, target };
  }

  it("plain (Brotli, streamed): SIGINT exits 130 with one line; no staging folder, no folder made", async () => {
    const { r, made } = await interruptStalled(PLAIN, "plain-target", "SIGINT", []);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^bernstein: interrupted by SIGINT; removed the restore's staging folder /m);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.equal(existsSync(made), false, `left: ${existsSync(made) ? readdirSync(made).join(" ") : ""}`);
  });

  it("encrypted (sealed, read whole): SIGTERM exits 143; no staging folder, no folder made", async () => {
    const extra = ["--password-file", pw, "--key-file", otherKey];
    const { r, made } = await interruptStalled(SEALED, "sealed-target", "SIGTERM", extra);
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /^bernstein: interrupted by SIGTERM; removed the restore's staging folder /m);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.equal(existsSync(made), false, `left: ${existsSync(made) ? readdirSync(made).join(" ") : ""}`);
    assert.equal(await readFile(otherKey, "utf8"), "another host's key\n");
  });

  it("a store that takes the snapshot's or a segment's GET and never answers: SIGINT / SIGTERM stop the restore all the same", async () => {
    for (const [url, of, signal, code, extra] of [
      [PLAIN, isSnapshot, "SIGINT", 130, []],
      [SEALED, isSegment, "SIGTERM", 143, ["--password-file", pw, "--key-file", otherKey]],
    ] as const) {
      const name = `held-${signal}`;
      const { r, made } = await interruptStalled(url, name, signal, [...extra], { fault: "hold", of });
      assert.equal(r.code, code, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^bernstein: interrupted by ${signal}; removed the restore's staging folder `, "m"),
      );
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.equal(existsSync(made), false, `left: ${existsSync(made) ? readdirSync(made).join(" ") : ""}`);
    }
  });

  it("the snapshot's audit key, saved beside the target when the host holds another: not after a failed or interrupted restore, kept after one that succeeds", async () => {
    const url = SEALED;
    const extra = ["--password-file", pw, "--key-file", otherKey];
    // Into an existing folder, failing after the snapshot (a segment's connection cut) and
    // interrupted there: nothing beside the target afterwards.
    const parent = path.join(s.dir, "existing");
    await mkdir(parent, { recursive: true });
    const target = path.join(parent, ".sdd");
    s.h.setFault((op, _nth, key) => (op === "GetObject" && key.includes(".seg.") ? "cut" : undefined));
    const failed = await s.f.cli(
      ["dr", "restore", "--from", url, "--latest", "--retries", "0", ...extra],
      target,
    );
    s.h.setFault(undefined);
    assert.notEqual(failed.code, 0, failed.stderr);
    assert.equal(failed.stderr.trimEnd().split("\n").length, 1, failed.stderr);
    assert.deepEqual(await readdir(parent), [], "a failed restore saves no audit key beside the target");
    const interrupted = await interruptStalled(url, "existing", "SIGTERM", extra);
    assert.equal(interrupted.r.code, 143, interrupted.r.stderr);
    assert.deepEqual(
      await readdir(parent),
      [],
      "an interrupted restore saves no audit key beside the target",
    );

    // Restored whole, the snapshot's key is saved beside the target for --key-file, as before.
    const ok = await s.f.cli(["dr", "restore", "--from", url, "--latest", ...extra], target);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual((await readdir(parent)).sort(), [".sdd", ".sdd.audit-key-from-backup"]);
    assert.match(ok.stderr, /a different audit key exists at .* the backup's key is saved at /);
  });
});
