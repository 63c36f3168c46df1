/**
 * Two histories in one archive: a workspace restored into another folder and archived to the
 * same store starts a generation of its own while the first workspace's archiver goes on with its
 * own, so their windows overlap. A point inside both comes from the newest generation and names
 * the other one; `--generation` chooses; an entry of the shared run that only the old generation
 * can reach (the new one's snapshot is past it) comes from the old one. The first workspace's
 * archiver, restarted, resumes its own generation.
 */
import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { Workspace } from "../../src/workspace/layout.js";
import { scratchDir, waitFor } from "../helpers.js";
import { killLeftArchivers, spawnArchiver } from "./support/archive-bursts.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-shared";

interface Restored {
  generation: string;
  at: string;
  wal: Record<string, { seq: number }>;
  warnings: string[];
}

describe("two histories in one archive", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let a: ArchiveFixture;
  let store: string;
  /** The first workspace's generation, the second's, and an instant inside both windows. */
  let first: string;
  let second: string;
  let inBoth: string;
  /** The newest instant of the first generation, after the second's window. */
  let firstLatest: string;

  /** Waits until `a`'s running archiver says the store holds RUN up to `seq`. */
  const shippedThrough = (seq: number, exited: Promise<unknown>) =>
    waitFor(
      `the store to hold ${RUN} up to seq ${seq}`,
      async () => (await readArchiveStatus(a.sdd))?.wal_shipped_seq?.[RUN] === seq,
      { exited },
    );

  before(async () => {
    scratch = await scratchDir("bernstein-two-histories-");
    a = await archiveFixture(path.join(scratch.dir, "a"));
    store = path.join(scratch.dir, "store");
    // Seq 0-2 in the first generation's snapshot, 3-9 in its segments.
    await appendDecisions(a.ws, RUN, 3);
    const archiver = spawnArchiver(a, store, ["--no-compact"]);
    await shippedThrough(2, archiver.done);
    await appendDecisions(a.ws, RUN, 7, 3);
    await shippedThrough(9, archiver.done);

    // The second workspace: the first one's seq 9, then a history of its own in the same run.
    const b = path.join(scratch.dir, "b", ".sdd");
    const restored = await a.cli(["dr", "restore", "--from", store, "--at-seq", `${RUN}:9`], b);
    assert.equal(restored.code, 0, restored.stderr);
    await appendDecisions(new Workspace(b), RUN, 3, 10);
    const once = await a.cli(["dr", "archive", "--to", store, "--once"], b);
    assert.equal(once.code, 0, once.stderr);

    // The first workspace goes on, and its archiver with its own generation.
    await appendDecisions(a.ws, RUN, 5, 10);
    await shippedThrough(14, archiver.done);
    const stopped = await archiver.stop();
    assert.equal(stopped.code, 143, stopped.stderr);

    const listed = await a.cli(["--json", "dr", "list", "--from", store]);
    const gens = JSON.parse(listed.stdout).generations as {
      generation: string;
      workspace: string;
      earliest: string;
      latest: string;
    }[];
    assert.equal(gens.length, 2, listed.stdout);
    // dr list names each generation's workspace: what tells two histories apart.
    assert.deepEqual(
      gens.map((g) => g.workspace),
      [`${os.hostname()}:${a.sdd}`, `${os.hostname()}:${b}`],
    );
    [first, second] = [gens[0]!.generation, gens[1]!.generation];
    inBoth = gens[1]!.latest;
    firstLatest = gens[0]!.latest;
    assert.ok(gens[0]!.earliest < inBoth && inBoth < gens[0]!.latest, listed.stdout);
  });
  after(async () => {
    killLeftArchivers();
    await scratch.cleanup();
  });

  const restore = async (name: string, args: string[]): Promise<Restored> => {
    const r = await a.cli(
      ["--json", "dr", "restore", "--from", store, ...args],
      path.join(scratch.dir, "out", name, ".sdd"),
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Restored;
  };

  it("--at inside both windows: the newest generation, the other named; --generation chooses it", async () => {
    const newest = await restore("at", ["--at", inBoth]);
    assert.equal(newest.generation, second);
    assert.equal(newest.wal[RUN]!.seq, 12, "the second workspace's history");
    assert.equal(newest.warnings.length, 1, newest.warnings.join("\n"));
    assert.match(
      newest.warnings[0]!,
      new RegExp(`also in the window of generation ${first} .*--generation ${first} restores that one`),
    );

    const old = await restore("at-first", ["--at", inBoth, "--generation", first]);
    assert.equal(old.generation, first);
    assert.equal(old.wal[RUN]!.seq, 9, "the first workspace made seq 10 on only after that instant");
    assert.deepEqual(old.warnings, []);
  });

  it("--latest: the newest generation, and the one that reaches later is named", async () => {
    const latest = await restore("latest", ["--latest"]);
    assert.equal(latest.generation, second);
    assert.match(
      latest.warnings.join("\n"),
      new RegExp(`generation ${first} .* reaches later.*--generation ${first} --latest`),
    );
    const firstLatest = await restore("latest-first", ["--latest", "--generation", first]);
    assert.equal(firstLatest.wal[RUN]!.seq, 14);
  });

  it("--at-seq: an entry only the old generation can cut at comes from it; one both hold names the other", async () => {
    const early = await restore("seq-early", ["--at-seq", `${RUN}:5`]);
    assert.equal(early.generation, first, "the second generation's snapshot is past seq 5");
    assert.equal(early.wal[RUN]!.seq, 5);
    assert.deepEqual(early.warnings, []);
    // The second generation holds seq 12 only in its base snapshot (taken after it was made), so
    // it cannot cut there: the first one, whose window holds its own seq 12, restores it.
    const both = await restore("seq-both", ["--at-seq", `${RUN}:12`]);
    assert.equal(both.generation, first);
    assert.equal(both.wal[RUN]!.seq, 12);
    assert.deepEqual(both.warnings, []);
  });

  it("the first workspace's archiver, restarted, resumes its own generation, not a new one", async () => {
    await appendDecisions(a.ws, RUN, 2, 15);
    const again = await a.cli(["--json", "dr", "archive", "--to", store, "--once"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).generation, first);
    const listed = JSON.parse((await a.cli(["--json", "dr", "list", "--from", store])).stdout);
    assert.equal(listed.generations.length, 2, "no third generation, no second base snapshot");
    const latest = await restore("resumed", ["--latest", "--generation", first]);
    assert.equal(latest.wal[RUN]!.seq, 16);
  });

  it("--generation that names no generation, or without --from: exit 2, nothing written", async () => {
    const target = path.join(scratch.dir, "never", ".sdd");
    for (const [args, re] of [
      [
        ["--from", store, "--latest", "--generation", "g-nope"],
        new RegExp(`--generation g-nope: .* holds no such generation \\(${first}, ${second}\\)`),
      ],
      [["--latest", "--generation", first], /--generation needs --from LOCATION naming a WAL archive/],
      // After that generation's window, not after the archive's: the other one that holds it is named.
      [
        ["--from", store, "--at", firstLatest, "--generation", second],
        new RegExp(
          `outside the archive's window \\(${second}: .*\\); generation ${second} holds nothing newer than ${inBoth} ` +
            `\\(--generation ${second} --latest restores to it\\); another generation holds it \\(${first}: `,
        ),
      ],
    ] as const) {
      const r = await a.cli(["dr", "restore", ...args], target);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
    const verify = await a.cli([
      "--json",
      "dr",
      "verify",
      "--from",
      store,
      "--at",
      inBoth,
      "--generation",
      first,
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(JSON.parse(verify.stdout).generation, first);
  });
});
