/**
 * A point in time given back as it was printed (issue 16 item 4): the time `wal show` prints for
 * an entry, given to `dr restore --from ARCHIVE --at`, holds that entry — with more or fewer
 * fractional digits, a `Z` or an offset, or as `@<epoch seconds>` — and the instant a restore
 * prints for `--at-seq`, and the window bounds `dr list --from` prints, restore the same way.
 * Entry times here fall 0.7 ms past a whole millisecond: a cut that rounded them left out the
 * entry whose printed (truncated) time it was given.
 */
import assert from "node:assert/strict";
import { cp, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { WalWriter } from "../../src/wal/writer.js";
import { scratchDir } from "../helpers.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-printed";
/** Entries made after the base snapshot, 10 ms apart, each 0.7 ms past a whole ten milliseconds. */
const TIMED = 4;

describe("dr restore --at: an instant as printed holds its entry", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: string;
  /** seq → the time `wal show` printed for it. */
  const printed = new Map<number, string>();
  /** seq → its `timestamp` as the WAL line holds it. */
  const raw = new Map<number, string>();
  let restores = 0;

  before(async () => {
    scratch = await scratchDir("bernstein-at-printed-");
    f = await archiveFixture(scratch.dir);
    store = path.join(scratch.dir, "store");
    await appendDecisions(f.ws, RUN, 3);
    // The store as the user types it (relative to the working folder), echoed as typed.
    const first = await f.cli(["dr", "archive", "--to", "./store", "--once"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^Archiving project\/\.sdd to \.\/store once, plain$/m);
    // After the snapshot (the window's start), on whole tens of ms so that `.xx0` can lose its 0.
    const base = Math.ceil(Date.now() / 10) * 10 + 10;
    let i = 0;
    const w = await WalWriter.open(f.ws, RUN, { clock: () => (base + 10 * i++ + 0.7) / 1000 });
    try {
      for (let n = 0; n < TIMED; n++)
        await w.append({ decision_type: "task_claimed", inputs: { task_id: `T-t${n}` }, committed: true });
    } finally {
      await w.close();
    }
    const r = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(r.code, 0, r.stderr);
    const show = await f.cli(["wal", "show", "--run", RUN]);
    assert.equal(show.code, 0, show.stderr);
    for (const line of show.stdout.trimEnd().split("\n")) {
      const [seq, when] = line.split("\t");
      printed.set(Number(seq), when!);
    }
    const json = await f.cli(["--json", "wal", "show", "--run", RUN]);
    for (const line of json.stdout.trimEnd().split("\n")) {
      const m = /"seq":(\d+),.*"timestamp":([0-9.e+-]+),/.exec(line);
      if (m) raw.set(Number(m[1]), m[2]!);
    }
    assert.equal(printed.size, 3 + TIMED, show.stdout);
  });
  after(async () => scratch.cleanup());

  /** The seq of RUN a restore to `at` holds (and what it printed as its instant). */
  const restoredSeq = async (
    flag: string,
    at: string,
    from = store,
  ): Promise<{ seq: number; at: string }> => {
    const target = path.join(scratch.dir, "restores", String(restores++), ".sdd");
    const r = await f.cli(["--json", "dr", "restore", "--from", from, flag, at], target);
    assert.equal(r.code, 0, `${flag} ${at}: ${r.stderr}`);
    const doc = JSON.parse(r.stdout);
    return { seq: doc.wal[RUN].seq, at: doc.at };
  };

  /** `2026-12-05T07:00:00.120Z` in the zone +02:00, and with its trailing zeros dropped. */
  const inOffset = (iso: string): string => {
    const d = new Date(Date.parse(iso) + 2 * 3600_000).toISOString();
    return d.replace(/Z$/, "+02:00");
  };

  it("the time wal show prints, as printed, with fewer or more digits, in an offset or as epoch seconds", async () => {
    const seq = 3 + 1;
    const when = printed.get(seq)!;
    assert.match(when, /\.\d\d0Z$/, "an entry on a whole ten milliseconds");
    const fewer = when.replace(/0Z$/, "Z");
    const more = when.replace(/Z$/, "999Z");
    for (const at of [when, fewer, more, inOffset(when), `@${raw.get(seq)!}`])
      assert.equal((await restoredSeq("--at", at)).seq, seq, `--at ${at}`);
    // A millisecond earlier is before the entry.
    const before = new Date(Date.parse(when) - 1).toISOString();
    assert.equal((await restoredSeq("--at", before)).seq, seq - 1, `--at ${before}`);
  });

  it("the instant a restore --at-seq prints holds that entry", async () => {
    const seq = 3 + TIMED - 2;
    const bySeq = await restoredSeq("--at-seq", `${RUN}:${seq}`);
    assert.equal(bySeq.at, printed.get(seq));
    assert.equal((await restoredSeq("--at", bySeq.at)).seq, seq);
  });

  it("the window dr list --from prints: both bounds restore, the latest holds the newest entry", async () => {
    const r = await f.cli(["dr", "list", "--from", store]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^g\S+ {2}(\S+) \.\. (\S+) /m.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal((await restoredSeq("--at", m[1]!)).seq, 2);
    assert.equal((await restoredSeq("--at", m[2]!)).seq, 3 + TIMED - 1);
  });

  it("an index that holds its first time rounded up (as archivers wrote it before) still gives its first entry", async () => {
    const old = path.join(scratch.dir, "store-rounded");
    await cp(store, old, { recursive: true });
    const seq = 3;
    const sidecar = (await readdir(old)).find((n) => n.includes(`.s${seq}-`) && n.endsWith(".meta.json"));
    assert.ok(sidecar, "the segment after the snapshot");
    const meta = JSON.parse(await readFile(path.join(old, sidecar), "utf8"));
    assert.equal(Number(meta["first-time"]), Date.parse(printed.get(seq)!));
    meta["first-time"] = String(Number(meta["first-time"]) + 1);
    await writeFile(path.join(old, sidecar), JSON.stringify(meta) + "\n");
    assert.equal((await restoredSeq("--at", printed.get(seq)!, old)).seq, seq);
  });
});
