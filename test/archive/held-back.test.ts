/**
 * WAL bytes the archiver must not ship, in its health: a running `dr archive` to a folder store
 * beside a WAL whose durable bytes end in a complete line that fails its check. An open run's
 * torn tail is held back (no error) and a bad line with valid entries after it is damage (one
 * error); either way `dr status` (human and --json) and the metrics file say the archive is
 * stalled, what is held back after which seq, and since when, and lag counts it. Once the
 * writer's next open cuts the torn tail, shipping resumes without a gap or a duplicate.
 */
import assert from "node:assert/strict";
import { appendFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, describe, it } from "node:test";
import { archiveHealth, type ArchiveStatus } from "../../src/archive/health.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { scratchDir, waitFor } from "../helpers.js";
import { killLeftArchivers, restoresAt, spawnArchiver, storedSeq } from "./support/archive-bursts.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-held-back";

type StatusArchive = ArchiveStatus & { running: boolean };

/**
 * `dr status --json`'s archive, read until `until` holds for the archiver `pid`. The status file
 * is polled in this process (what `dr status` reads, archiveHealth), and the CLI run once it says
 * so: what the caller checks is the CLI's own output, without a CLI run per poll.
 */
async function statusUntil(
  f: ArchiveFixture,
  pid: number,
  exited: Promise<unknown>,
  what: string,
  until: (a: StatusArchive) => boolean,
): Promise<StatusArchive> {
  return waitFor(
    what,
    async () => {
      const h = await archiveHealth(f.sdd);
      if (h === null || h.pid !== pid || !until(h)) return false;
      const a = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive as StatusArchive | null;
      return a !== null && a.pid === pid && until(a) && a;
    },
    { exited },
  );
}

/** Waits until the archiver ships again with nothing held back and no error, and the store holds `seq`. */
async function shippingResumed(
  f: ArchiveFixture,
  a: { pid: number; done: Promise<unknown> },
  store: Parameters<typeof openCatalogue>[0],
  what: string,
  seq: number,
): Promise<void> {
  const ok = await statusUntil(f, a.pid, a.done, what, (s) => s.state === "ok" && s.lag_entries === 0);
  assert.deepEqual(ok.held_back, []);
  assert.equal(ok.errors_total, 0);
  await waitFor(
    `seq ${seq} in the store`,
    async () => (await storedSeq(await openCatalogue(store), RUN)) === seq,
  );
}

/** One `bernstein_archive_<name>` sample line of the metrics file. */
async function metricLine(file: string, name: string): Promise<string | undefined> {
  return (await readFile(file, "utf8").catch(() => ""))
    .split("\n")
    .find((l) => l.startsWith(`bernstein_archive_${name}{`));
}

/** The line of seq `seq` with its hash left as it was and `inputs` changed: a complete line that fails its hash. */
const badLine = (line: string, seq: number): string =>
  line.replace(/"seq": ?\d+/, `"seq": ${seq}`).replace(/"task_id": ?"T-\d+"/, `"task_id": "T-bad"`);

describe("archive health: WAL bytes held back", () => {
  const scratches: { cleanup: () => Promise<void> }[] = [];
  after(async () => {
    killLeftArchivers();
    for (const s of scratches) await s.cleanup();
  });

  it("an open run's torn tail is held back and reported (no error); after the writer cuts it shipping resumes", async () => {
    const scratch = await scratchDir("bernstein-archive-held-back-");
    scratches.push(scratch);
    const f = await archiveFixture(path.join(scratch.dir, "src"));
    const store = path.join(scratch.dir, "store");
    const metrics = path.join(scratch.dir, "archive.prom");
    await appendDecisions(f.ws, RUN, 10);
    const wal = f.ws.walFile(RUN);
    const lines = (await readFile(wal, "utf8")).split(/(?<=\n)/);
    const torn = badLine(lines[9]!, 10);
    assert.notEqual(torn, lines[9]);
    await appendFile(wal, torn);

    const a = spawnArchiver(f, store, ["--metrics-file", metrics]);
    const st = await statusUntil(f, a.pid, a.done, "the torn tail held back", (s) => s.state === "stalled");
    assert.equal(st.held_back.length, 1);
    const h = st.held_back[0]!;
    assert.equal(h.run, RUN);
    assert.equal(h.after_seq, 9);
    assert.equal(h.offset, Buffer.byteLength(lines.join("")));
    assert.equal(h.bytes, Buffer.byteLength(torn));
    assert.equal(h.lines, 1);
    assert.equal(h.damage, false);
    assert.match(
      h.message,
      new RegExp(`held back: ${h.bytes} bytes of ${RUN} after seq 9 .*not yet valid.*hash_mismatch`),
    );
    assert.ok(Date.parse(h.since) <= Date.parse(st.updated_at));
    assert.equal(st.errors_total, 0, "a torn tail is no error");
    assert.equal(st.lag_entries, 1);
    assert.equal(st.lag_bytes, h.bytes);
    assert.equal(st.lag_seconds, (Date.parse(st.updated_at) - Date.parse(h.since)) / 1000);

    const human = (await f.cli(["dr", "status"])).stdout;
    assert.match(
      human,
      new RegExp(
        `Archive: .*lag 1 entries \\(${h.bytes} bytes held back\\).*STALLED: held back: .* after seq 9`,
      ),
    );
    await waitFor("the metrics file to say stalled", async () =>
      (await metricLine(metrics, "stalled"))?.endsWith(" 1"),
    );
    const sample = await metricLine(metrics, "held_back");
    assert.ok(sample?.includes(`run="${RUN}",after_seq="9",kind="torn_tail",reason="held back:`), sample);
    assert.ok(sample!.endsWith(` ${h.bytes}`), sample);

    // The writer's next open cuts the torn tail to a sidecar and goes on from seq 9.
    await appendDecisions(f.ws, RUN, 5, 10);
    await shippingResumed(f, a, store, "shipping to resume", 14);
    await waitFor("the metrics file to say shipping goes on", async () =>
      (await metricLine(metrics, "stalled"))?.endsWith(" 0"),
    );
    assert.equal(await metricLine(metrics, "held_back"), undefined);
    const out = await a.stop();
    assert.equal((out.stderr.match(/held back:/g) ?? []).length, 1, `named once: ${out.stderr}`);
    assert.match(out.stdout, new RegExp(`${RUN}: the bytes held back after seq 9 are gone or valid now`));
    await restoresAt(f, store, RUN, 14);
    await restoresAt(f, store, RUN, 10, [], "in-process");
  });

  it("an open run's last line without its newline is held back as its torn tail (no error), and shipped once the line is finished", async () => {
    const scratch = await scratchDir("bernstein-archive-unfinished-line-");
    scratches.push(scratch);
    const f = await archiveFixture(path.join(scratch.dir, "src"));
    const store = path.join(scratch.dir, "store");
    // Valid lines for seq 10 and 11 of this run: another workspace's run of the same name.
    const other = await archiveFixture(path.join(scratch.dir, "other"));
    await appendDecisions(other.ws, RUN, 12);
    const lines = (await readFile(other.ws.walFile(RUN), "utf8")).split(/(?<=\n)/);
    await mkdir(path.dirname(f.ws.walFile(RUN)), { recursive: true });
    await writeFile(f.ws.walFile(RUN), lines.slice(0, 10).join(""));
    const a = spawnArchiver(f, store, []);
    await statusUntil(f, a.pid, a.done, "the first cycle", (s) => s.caught_up_at !== null);
    const line = lines[10]!;
    const half = Math.floor(line.length / 2);
    await appendFile(f.ws.walFile(RUN), line.slice(0, half));

    const st = await statusUntil(
      f,
      a.pid,
      a.done,
      "the unfinished line held back",
      (s) => s.state === "stalled",
    );
    const h = st.held_back[0]!;
    assert.deepEqual(
      [h.run, h.after_seq, h.offset, h.bytes, h.lines, h.damage],
      [
        RUN,
        9,
        Buffer.byteLength(lines.slice(0, 10).join("")),
        Buffer.byteLength(line.slice(0, half)),
        0,
        false,
      ],
    );
    assert.match(
      h.message,
      /^held back: .*not yet valid \(its last line has no newline\): an open run's torn tail/,
    );
    assert.equal(st.errors_total, 0, "a torn tail is no error");
    assert.equal(st.last_error, null);
    assert.equal(
      await storedSeq(await openCatalogue(store), RUN),
      -1,
      "the base snapshot holds seq 0-9, and no segment any of the unfinished line",
    );

    // The writer finishes the line, and writes the next one.
    await appendFile(f.ws.walFile(RUN), line.slice(half) + lines[11]!);
    await shippingResumed(f, a, store, "the finished line shipped", 11);
    const out = await a.stop();
    assert.equal((out.stderr.match(/held back:/g) ?? []).length, 1, `named once: ${out.stderr}`);
    assert.doesNotMatch(out.stderr, /damaged WAL:/);
    assert.match(out.stdout, new RegExp(`${RUN}: the bytes held back after seq 9 are gone or valid now`));
    // No gap, no duplicate: the restored WAL is the source's, line for line.
    await restoresAt(f, store, RUN, 10, [], "in-process");
    await restoresAt(f, store, RUN, 11);
  });

  it("a bad line with valid entries after it is damage: one error naming it, the run stalled after it", async () => {
    const scratch = await scratchDir("bernstein-archive-damaged-");
    scratches.push(scratch);
    const f = await archiveFixture(path.join(scratch.dir, "src"));
    const store = path.join(scratch.dir, "store");
    const metrics = path.join(scratch.dir, "archive.prom");
    // The base snapshot copies the WAL as it is: the damage comes after the archiver's first cycle.
    const other = await archiveFixture(path.join(scratch.dir, "other"));
    await appendDecisions(other.ws, RUN, 20);
    const lines = (await readFile(other.ws.walFile(RUN), "utf8")).split(/(?<=\n)/);
    await mkdir(path.dirname(f.ws.walFile(RUN)), { recursive: true });
    await writeFile(f.ws.walFile(RUN), lines.slice(0, 10).join(""));
    const a = spawnArchiver(f, store, ["--metrics-file", metrics]);
    await statusUntil(f, a.pid, a.done, "the first cycle", (s) => s.caught_up_at !== null);
    const damaged = lines.slice(10);
    damaged[4] = badLine(damaged[4]!, 14);
    await appendFile(f.ws.walFile(RUN), damaged.join(""));

    const st = await statusUntil(f, a.pid, a.done, "the damage reported", (s) => s.state === "stalled");
    const h = st.held_back[0]!;
    assert.equal(h.damage, true);
    assert.equal(h.after_seq, 13);
    assert.equal(h.lines, 6);
    assert.equal(h.offset, Buffer.byteLength(lines.slice(0, 14).join("")));
    assert.match(
      h.message,
      new RegExp(
        `damaged WAL: ${RUN} seq 14 at byte ${h.offset} fails its check \\(hash_mismatch.*valid entries after it \\(seq 19\\)`,
      ),
    );
    assert.equal(st.errors_total, 1);
    assert.equal(st.last_error, h.message);
    assert.equal(st.lag_entries, 6);
    // Named once: the cycles after it neither count it again nor log it again.
    const later = await statusUntil(
      f,
      a.pid,
      a.done,
      "a later status write",
      (s) => s.updated_at > st.updated_at,
    );
    assert.equal(later.errors_total, 1);
    assert.equal(later.state, "stalled");
    assert.match((await f.cli(["dr", "status"])).stdout, /STALLED: damaged WAL: /);
    await waitFor("the metrics file to count the damage", async () =>
      (await metricLine(metrics, "damaged"))?.endsWith(" 1"),
    );
    assert.ok((await metricLine(metrics, "held_back"))?.includes(`kind="damage",reason="damaged WAL:`));
    assert.equal(
      await storedSeq(await openCatalogue(store), RUN),
      13,
      "every entry before the damage is shipped",
    );
    const out = await a.stop();
    assert.equal((out.stderr.match(/damaged WAL:/g) ?? []).length, 1, `named once: ${out.stderr}`);
  });
  it("damage already in the workspace when a generation starts ships inside its base snapshot and is named: one error, --once exits 9", async () => {
    const scratch = await scratchDir("bernstein-archive-snapshot-damage-");
    scratches.push(scratch);
    const f = await archiveFixture(path.join(scratch.dir, "src"));
    const store = path.join(scratch.dir, "store");
    await appendDecisions(f.ws, RUN, 20);
    const lines = (await readFile(f.ws.walFile(RUN), "utf8")).split(/(?<=\n)/);
    const original = lines[7]!;
    // Same length as the original, so that a repair in place leaves every offset and the tail as they were.
    lines[7] = original.replace(/"task_id": ?"T-7"/, (m) => m.replace("T-7", "T-x"));
    assert.notEqual(lines[7], original);
    await writeFile(f.ws.walFile(RUN), lines.join(""));
    const once = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(once.code, 9, `--once: what could be shipped is, then exit 9: ${once.stderr}`);
    const named = once.stderr.split("\n").filter((l) => l.includes("damaged WAL:"));
    assert.equal(named.length, 1, once.stderr);
    assert.match(
      named[0]!,
      new RegExp(
        `^warning: damaged WAL: ${RUN} seq 7 \\(line 8: hash_mismatch\\).*base snapshot 0 holds it as found`,
      ),
    );
    const a = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive as StatusArchive;
    assert.equal(a.errors_total, 1);
    assert.match(a.last_error ?? "", new RegExp(`damaged WAL: ${RUN} seq 7 `));

    // The generation remembers it (its snapshot's index): every --once of it exits 9 and names it.
    await appendDecisions(f.ws, RUN, 2, 20);
    const again = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(again.code, 9, `a later --once of the same generation: ${again.stdout}${again.stderr}`);
    assert.match(again.stdout, /resum/i);
    assert.equal((again.stderr.match(/damaged WAL:/g) ?? []).length, 1, again.stderr);
    const st = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive as StatusArchive;
    assert.deepEqual(
      st.wal_breaks?.map((b) => [b.run_id, b.seq, b.line, b.kind, b.snapshot]),
      [[RUN, 7, 8, "hash_mismatch", 0]],
    );
    assert.equal(st.errors_total, 1);
    assert.match(
      (await f.cli(["dr", "status"])).stdout,
      new RegExp(`Archive: .*DAMAGED: ${RUN} seq 7 \\(line 8: hash_mismatch\\).*base snapshot 0`),
    );
    const listed = await f.cli(["dr", "list", "--from", store]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`^  DAMAGED snapshot 0: ${RUN} seq 7 \\(line 8: hash_mismatch\\)`, "m"),
    );
    const doc = JSON.parse((await f.cli(["--json", "dr", "list", "--from", store])).stdout);
    assert.equal(doc.generations[0].snapshots[0].wal_breaks[0].seq, 7);

    // Repaired in place (its tail unchanged): a new generation starts from the intact workspace,
    // naming why, and --once is clean again.
    const now = (await readFile(f.ws.walFile(RUN), "utf8")).split(/(?<=\n)/);
    now[7] = original;
    await writeFile(f.ws.walFile(RUN), now.join(""));
    assert.equal((await f.cli(["wal", "verify"])).code, 0);
    const intact = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(intact.code, 0, intact.stdout + intact.stderr);
    assert.match(
      intact.stdout,
      new RegExp(
        `${RUN}: the break at seq 7 \\(line 8\\) that base snapshot 0 .* is no longer in the workspace \\(repaired\\)`,
      ),
    );
    assert.doesNotMatch(intact.stderr, /damaged WAL:/);
    const clean = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).archive as StatusArchive;
    assert.deepEqual(clean.wal_breaks, []);
    assert.notEqual(clean.generation, st.generation);
    assert.doesNotMatch((await f.cli(["dr", "status"])).stdout, /DAMAGED/);
  });
});
