/**
 * Background compaction failures in the archiver's health: a running `dr archive` to the
 * S3-compatible server whose deletes the store refuses (a merge is stored, its pieces cannot be
 * removed) reports the failing compaction in `dr status` (human and --json) and the metrics file
 * while shipping goes on; once the store deletes again the next compaction completes and the
 * status and metrics say so.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus, type ArchiveStatus } from "../../src/archive/health.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { waitFor, withSeed } from "../helpers.js";
import { failAlways } from "../storage/support/s3-harness.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";
import { feedBursts, killLeftArchivers, spawnArchiver, storedSeq } from "./support/archive-bursts.js";

const BUCKET = "wal-archive-compact-health";
const RUN = "run-compact-health";
const MAX_BURSTS = 200;

/** One `bernstein_archive_<name>` value of the metrics file. */
async function metric(file: string, name: string): Promise<number | undefined> {
  const line = (await readFile(file, "utf8"))
    .split("\n")
    .find((l) => l.startsWith(`bernstein_archive_${name}{`));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

describe("background compaction failures in dr status and the metrics file", () => {
  let s: S3ArchiveSetup;
  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-archive-compact-health-");
  });
  after(async () => {
    killLeftArchivers();
    await s.close();
  });

  it("a compaction the store refuses is reported while shipping goes on; the next one after recovery clears it", async () => {
    await withSeed("ARCHIVE_COMPACT_HEALTH_SEED", async (rand) => {
      const { h, f } = s;
      const url = `s3://${BUCKET}/site/`;
      const remote = ["--endpoint", h.endpoint, "--retries", "0"];
      // Watches the bucket while merged pieces are deleted (see s3-prune-compact.test.ts).
      const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 3 });
      const metrics = path.join(s.dir, "archive.prom");
      const a = spawnArchiver(f, url, [
        "--compact-target-size",
        "4KiB",
        "--metrics-file",
        metrics,
        ...remote,
      ]);
      /** Decision bursts, each waited for in the store, until the archiver's status meets `until`. */
      const feedUntil = async (made: number, until: (st: ArchiveStatus) => boolean, what: string) => {
        for (let b = 0; b < MAX_BURSTS; b++) {
          const st = await readArchiveStatus(f.sdd);
          if (st?.pid === a.pid && until(st)) return { made, st };
          made = await feedBursts(f, store, RUN, a, { bursts: 1, made, rand });
        }
        throw new Error(`${what}: not seen after ${MAX_BURSTS} bursts`);
      };

      h.setFault(failAlways("DeleteObject", 503));
      const failing = await feedUntil(0, (st) => st.compaction_errors_in_a_row > 0, "a failed compaction");
      // Shipping went on: every burst was waited for in the store; so is one more.
      const made = await feedBursts(f, store, RUN, a, { bursts: 2, made: failing.made, rand });
      assert.equal(await storedSeq(store, RUN), made - 1);

      const json = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive;
      assert.equal(json.errors_in_a_row, 0, "shipping is not failing");
      assert.ok(
        json.compaction_errors_total >= 1 && json.compaction_errors_in_a_row >= 1,
        JSON.stringify(json),
      );
      assert.ok(json.last_compaction_error?.message, JSON.stringify(json));
      assert.ok(!Number.isNaN(Date.parse(json.last_compaction_error.at)), JSON.stringify(json));
      const human = (await f.cli(["dr", "status"])).stdout;
      assert.match(human, /^Archive: .*compaction FAILING x\d+ \(last at [^)]+\): \S/m, human);
      // The metrics file follows each status write: wait for the write that carried the failure.
      await waitFor("the failure in the metrics file", async () => {
        const errorSeconds = await metric(metrics, "last_compaction_error_timestamp_seconds");
        return (
          ((await metric(metrics, "compaction_errors_total")) ?? 0) >= 1 &&
          ((await metric(metrics, "compaction_errors_in_a_row")) ?? 0) >= 1 &&
          errorSeconds !== undefined &&
          errorSeconds >= Math.floor(Date.parse(json.last_compaction_error.at) / 1000)
        );
      });

      h.setFault(undefined);
      const errorAt = Date.parse(json.last_compaction_error.at);
      const recovered = await feedUntil(
        made,
        (st) =>
          st.compaction_errors_in_a_row === 0 &&
          st.last_compaction_at !== null &&
          Date.parse(st.last_compaction_at) >= errorAt,
        "a compaction completing after the store recovered",
      );
      const after = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive;
      assert.equal(after.compaction_errors_in_a_row, 0, JSON.stringify(after));
      assert.ok(Date.parse(after.last_compaction_at) >= errorAt, JSON.stringify(after));
      assert.equal(after.compaction_errors_total, recovered.st.compaction_errors_total);
      const humanAfter = (await f.cli(["dr", "status"])).stdout;
      assert.match(humanAfter, /^Archive: .*, last compaction \d{4}-/m, humanAfter);
      assert.doesNotMatch(humanAfter, /compaction FAILING/);
      await waitFor(
        "the completed compaction in the metrics file",
        async () =>
          (await metric(metrics, "compaction_errors_in_a_row")) === 0 &&
          ((await metric(metrics, "last_compaction_timestamp_seconds")) ?? 0) >= Math.floor(errorAt / 1000),
      );

      const r = await a.stop();
      assert.equal(r.code, 143, r.stderr);
      const check = await f.cli(["--json", "dr", "list", "--from", url, "--check", ...remote]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
    });
  });
});
