/**
 * The S3-compatible store failing (503s and connection resets) while 1,000 decisions are made:
 * the archiver keeps running, reports the growing lag and its errors, catches up once the store
 * answers again, and the archive then restores to the very last decision. SIGTERM ends it
 * cleanly (143) after the upload in flight.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { scratchDir, spawnCli, waitFor } from "../helpers.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const BUCKET = "wal-archive";
const RUN = "run-outage";

type Status = Awaited<ReturnType<typeof readArchiveStatus>>;

/** Waits for the first cycle, fails the store's writes during 1,000 decisions, then lets it recover. */
async function outageThenRecovery(
  h: S3Harness,
  f: ArchiveFixture,
  status: () => Promise<Status>,
  pid: number,
  done: Promise<unknown>,
): Promise<void> {
  await waitFor("the first cycle", async () => (await status())?.pid === pid, { exited: done });

  const faults = [503, "reset"] as const;
  h.setFault((op, nth) => (op === "PutObject" ? faults[nth % faults.length] : undefined));
  await appendDecisions(f.ws, RUN, 1000, 10);
  const down = await waitFor(
    "the outage reported",
    async () => {
      const s = await status();
      return s && s.errors_in_a_row >= 3 && s.lag_entries > 0 ? s : undefined;
    },
    { exited: done },
  );
  assert.ok(down.last_error, JSON.stringify(down));
  const shown = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive;
  assert.equal(shown.running, true);
  assert.ok(shown.errors_in_a_row > 0 && shown.lag_entries > 0 && shown.last_error, JSON.stringify(shown));

  h.setFault(undefined);
  const up = await waitFor(
    "caught up",
    async () => {
      const s = await status();
      return s && s.errors_in_a_row === 0 && s.lag_entries === 0 && s.errors_total > 0 ? s : undefined;
    },
    { exited: done },
  );
  assert.equal(up.lag_seconds, 0);
}

describe("dr archive to s3:// through a store outage", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-archive-s3-");
    f = await archiveFixture(scratch.dir, h.env);
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });

  it("1,000 decisions during the outage: lag and errors reported, then caught up, nothing lost", async () => {
    const url = `s3://${BUCKET}/site/`;
    const remote = ["--endpoint", h.endpoint, "--retries", "0"];
    await appendDecisions(f.ws, RUN, 10);
    const { child, done } = spawnCli(
      ["--sdd", f.sdd, "dr", "archive", "--to", url, "--interval", "50ms", ...remote],
      {
        env: f.env,
        cwd: scratch.dir,
      },
    );
    const status = () => readArchiveStatus(f.sdd);
    try {
      await outageThenRecovery(h, f, status, child.pid!, done);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    }
    const r = await done;
    assert.equal(r.code, 143, r.stderr);

    const list = await f.cli(["--json", "dr", "archive-list", "--from", url, "--check", ...remote]);
    assert.equal(list.code, 0, list.stdout + list.stderr);
    assert.equal(JSON.parse(list.stdout).generations.length, 1);
    const restored = path.join(scratch.dir, "restored", ".sdd");
    const rr = await f.cli(
      ["--json", "dr", "archive-restore", "--from", url, "--latest", ...remote],
      restored,
    );
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(JSON.parse(rr.stdout).wal[RUN].seq, 1009);
    const wal = await readFile(path.join(restored, "runtime", "wal", `${RUN}.wal.jsonl`));
    assert.ok(wal.equals(await readFile(f.ws.walFile(RUN))));
  });

  it("a store failing from the archiver's start: the lag in seconds grows from that start", async () => {
    const g = await archiveFixture(path.join(scratch.dir, "from-start"), h.env);
    await appendDecisions(g.ws, RUN, 5);
    h.setFault(() => 503);
    const { child, done } = spawnCli(
      [
        "--sdd",
        g.sdd,
        "dr",
        "archive",
        "--to",
        `s3://${BUCKET}/down/`,
        "--interval",
        "50ms",
        "--endpoint",
        h.endpoint,
        "--retries",
        "0",
      ],
      { env: g.env, cwd: scratch.dir },
    );
    try {
      const s = await waitFor(
        "the lag counted from the start",
        async () => {
          const st = await readArchiveStatus(g.sdd);
          return st && st.pid === child.pid && st.errors_in_a_row >= 3 && st.lag_seconds > 0.1
            ? st
            : undefined;
        },
        { exited: done },
      );
      assert.equal(s.caught_up_at, null);
      assert.equal(s.state, "failing");
    } finally {
      h.setFault(undefined);
      child.kill("SIGTERM");
    }
    assert.equal((await done).code, 143);
  });
});

/** The samples of a metrics file, by metric name (labels dropped). */
async function metricsOf(file: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await readFile(file, "utf8")).split("\n")) {
    const m = /^(bernstein_archive_\w+)\{[^}]*\} (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe("dr archive --once from cron through a store outage", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-archive-s3-once-");
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });

  it("failing runs keep what earlier runs established; lag and errors in a row grow across runs", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "cron"), h.env);
    const metrics = path.join(scratch.dir, "cron.prom");
    const once = () =>
      f.cli([
        "--json",
        "dr",
        "archive",
        "--to",
        `s3://${BUCKET}/cron/`,
        "--once",
        "--endpoint",
        h.endpoint,
        "--retries",
        "0",
        "--metrics-file",
        metrics,
      ]);
    await appendDecisions(f.ws, RUN, 10);
    const ok = await once();
    assert.equal(ok.code, 0, ok.stderr);
    const first = (await readArchiveStatus(f.sdd))!;
    assert.ok(
      first.last_upload_at && first.caught_up_at && first.window_start_at && first.window_end_at,
      JSON.stringify(first),
    );

    h.setFault(() => 503);
    try {
      for (const n of [1, 2]) {
        await new Promise((r) => setTimeout(r, 1100));
        const down = await once();
        assert.equal(down.code, 7, down.stderr);
        const s = (await readArchiveStatus(f.sdd))!;
        assert.equal(s.errors_in_a_row, n, JSON.stringify(s));
        assert.equal(s.state, "failing");
        for (const k of [
          "last_upload_at",
          "caught_up_at",
          "window_start_at",
          "window_end_at",
          "generation",
        ] as const)
          assert.equal(s[k], first[k], k);
        assert.deepEqual(s.wal_shipped_seq, first.wal_shipped_seq);
        const m = await metricsOf(metrics);
        assert.equal(m.get("bernstein_archive_errors_in_a_row"), n);
        assert.ok(
          m.get("bernstein_archive_lag_seconds")! >= 1.1 * n,
          `lag ${m.get("bernstein_archive_lag_seconds")}`,
        );
        assert.equal(
          m.get("bernstein_archive_last_upload_timestamp_seconds"),
          Math.floor(Date.parse(first.last_upload_at!) / 1000),
        );
        assert.equal(
          m.get("bernstein_archive_window_start_timestamp_seconds"),
          Date.parse(first.window_start_at!) / 1000,
        );
        assert.equal(
          m.get("bernstein_archive_window_end_timestamp_seconds"),
          Date.parse(first.window_end_at!) / 1000,
        );
        assert.equal(
          m.get("bernstein_archive_caught_up_timestamp_seconds"),
          Math.floor(Date.parse(first.caught_up_at!) / 1000),
        );
        // The store holds every entry: losing the host now loses nothing.
        const shown = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout);
        assert.equal(shown.archive.lag_entries, 0, JSON.stringify(shown.archive));
        assert.equal(shown.archive.last_upload_at, first.last_upload_at);
        assert.equal(shown.rpo_estimate.entries, 0, JSON.stringify(shown.rpo_estimate));
      }
      // A long-running archiver started while the store is still down carries on the same way:
      // its announcement does not erase what the earlier runs established before it fails.
      const { child, done } = spawnCli(
        ["--sdd", f.sdd, "dr", "archive", "--to", `s3://${BUCKET}/cron/`, "--interval", "50ms"].concat([
          "--endpoint",
          h.endpoint,
          "--retries",
          "0",
        ]),
        { env: f.env, cwd: scratch.dir },
      );
      try {
        const s = await waitFor(
          "the restarted archiver's failures counted on",
          async () => {
            const st = await readArchiveStatus(f.sdd);
            return st && st.pid === child.pid && st.errors_in_a_row >= 3 ? st : undefined;
          },
          { exited: done },
        );
        for (const k of ["last_upload_at", "caught_up_at", "window_start_at", "generation"] as const)
          assert.equal(s[k], first[k], k);
      } finally {
        child.kill("SIGTERM");
        await done;
      }
    } finally {
      h.setFault(undefined);
    }

    // The store answers again and nothing is new: caught up, and the last upload stays the first run's.
    const again = await once();
    assert.equal(again.code, 0, again.stderr);
    const s = (await readArchiveStatus(f.sdd))!;
    assert.equal(s.errors_in_a_row, 0);
    assert.equal(s.last_upload_at, first.last_upload_at);
    assert.ok(Date.parse(s.caught_up_at!) > Date.parse(first.caught_up_at!));
    assert.equal((await metricsOf(metrics)).get("bernstein_archive_lag_seconds"), 0);
  });
});
