/**
 * Background compaction inside a running `dr archive` (real child processes, a folder store):
 * small segments are merged while decisions keep coming, the object count goes down, points
 * inside merged ranges restore and verify; SIGKILL during the merges (seeded) loses nothing and
 * duplicates nothing; encrypted generations (password, age recipient) compact under their own
 * key with no plaintext in the store; `dr archive-compact` opens them with the key (and skips
 * them without it), and runs beside the archiver's own compaction.
 * Seed: $ARCHIVE_BG_COMPACT_SEED, printed on failure.
 */
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { LocalStore } from "../../src/storage/local-store.js";
import { folderChanges, scratchDir, waitFor, withSeed } from "../helpers.js";
import { archiveFixture } from "./support/archive-workspace.js";
import {
  feedBursts,
  killLeftArchivers,
  pointsInsideMerges,
  restoresAt,
  spawnArchiver,
  walSegmentsOf,
} from "./support/archive-bursts.js";

const RUN = "run-bg";
const SMALL = ["--compact-target-size", "4KiB"];

/** Some WAL segment of the store holds at least `n` entries: a merge happened. */
const mergedOf = async (store: LocalStore, n = 4) =>
  (await walSegmentsOf(store, RUN)).some((s) => (s.lastSeq ?? 0) - (s.firstSeq ?? 0) + 1 >= n);

/**
 * Every object of a folder store that is not a JSON record, as text (for plaintext checks: look
 * for text with quotes, which no base64 Fernet token holds).
 */
async function payloads(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of await readdir(dir))
    if (!n.startsWith(".") && !n.endsWith(".json"))
      out.push((await readFile(path.join(dir, n))).toString("latin1"));
  return out;
}

describe("background compaction in dr archive", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    scratch = await scratchDir("bernstein-archive-bg-compact-");
  });
  after(async () => {
    killLeftArchivers();
    await scratch.cleanup();
  });

  it("merges small segments while shipping: fewer objects, points inside merges restore and verify", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      const f = await archiveFixture(path.join(scratch.dir, "plain"));
      const dir = path.join(f.dir, "store");
      const store = new LocalStore(dir);
      const a = spawnArchiver(f, dir, SMALL);
      const made = await feedBursts(f, store, RUN, a, { bursts: 40, made: 0, rand });
      await waitFor("a merged segment", () => mergedOf(store, 6), { exited: a.done });
      const r = await a.stop();
      assert.equal(r.code, 143, r.stderr);
      assert.match(r.stdout, /^Archiving .* every 10ms, plain \(Ctrl-C stops after the upload in flight\)$/m);
      assert.match(r.stdout, /compacted .*segment\(s\) merged into/);
      const segments = await walSegmentsOf(store, RUN);
      assert.ok(segments.length < 40 / 2, `${segments.length} WAL segments left of 40 bursts`);
      const check = await f.cli(["--json", "dr", "list", "--from", dir, "--check"]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      for (const seq of await pointsInsideMerges(store, RUN, 4))
        await restoresAt(f, dir, RUN, seq, [], "in-process");
      await restoresAt(f, dir, RUN, made - 1);
    });
  });

  it("--no-compact leaves every small segment", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      const f = await archiveFixture(path.join(scratch.dir, "off"));
      const dir = path.join(f.dir, "store");
      const store = new LocalStore(dir);
      const a = spawnArchiver(f, dir, [...SMALL, "--no-compact"]);
      await feedBursts(f, store, RUN, a, { bursts: 20, made: 0, rand });
      const r = await a.stop();
      assert.doesNotMatch(r.stdout, /compacted/);
      assert.equal(await mergedOf(store, 3), false);
    });
  });

  it("SIGKILL during background compaction (seeded rounds): nothing lost, no entry twice", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      const f = await archiveFixture(path.join(scratch.dir, "kill"));
      const dir = path.join(f.dir, "store");
      const store = new LocalStore(dir);
      let made = 0;
      let killedAfterDeletes = 0;
      for (let round = 0; round < 5; round++) {
        const a = spawnArchiver(f, dir, SMALL);
        // Killed once the store lost n objects since the round began: merges are under way. The
        // objects seen include those the round stored itself (each burst is its own segment, and
        // the round's merges delete them too), not only those there when it began; a put's temp
        // files, renamed into place, are not objects.
        const n = 1 + Math.floor(rand() * 12);
        const objects = async () =>
          new Set((await readdir(dir).catch(() => [] as string[])).filter((k) => !k.includes(".tmp-")));
        const seen = await objects();
        let deleted = 0;
        let stopWatching = false;
        const changes = folderChanges(dir);
        const watcher = (async () => {
          while (!stopWatching && deleted < n) {
            const now = await objects();
            for (const k of now) seen.add(k);
            deleted = [...seen].filter((k) => !now.has(k)).length;
            await changes.next();
          }
        })().finally(() => changes.close());
        made = await feedBursts(f, store, RUN, a, {
          bursts: 30,
          made,
          rand,
          halt: () => deleted >= n,
        });
        stopWatching = true;
        await watcher;
        const r = await a.kill();
        assert.ok(r.signal === "SIGKILL", `round ${round}: ${r.stderr}`);
        if (deleted >= n) killedAfterDeletes++;
      }
      assert.ok(killedAfterDeletes > 0, "no kill landed while merges were under way");
      // A last archiver ships the rest and cleans up what the kills left.
      const a = spawnArchiver(f, dir, SMALL);
      made = await feedBursts(f, store, RUN, a, { bursts: 10, made, rand });
      await a.stop();
      const check = await f.cli(["--json", "dr", "list", "--from", dir, "--check"]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const gens = JSON.parse(check.stdout).generations as { gaps: unknown[] }[];
      assert.equal(gens.length, 1, "one generation across the kills");
      assert.deepEqual(gens[0]!.gaps, []);
      for (const seq of await pointsInsideMerges(store, RUN, 3))
        await restoresAt(f, dir, RUN, seq, [], "in-process");
      await restoresAt(f, dir, RUN, made - 1);
    });
  });

  it("encrypted generations (password, age recipient) compact under their key: restorable, never plaintext", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      for (const kind of ["password", "age"] as const) {
        const f = await archiveFixture(path.join(scratch.dir, `enc-${kind}`));
        const dir = path.join(f.dir, "store");
        const store = new LocalStore(dir);
        let writeKeys: string[];
        let readKeys: string[];
        if (kind === "password") {
          const pw = path.join(f.dir, "pw");
          await writeFile(pw, "correct horse\n", { mode: 0o600 });
          writeKeys = ["--encrypt", "--password-file", pw];
          readKeys = ["--password-file", pw];
        } else {
          const id = path.join(f.dir, "id.txt");
          const k = await f.cli(["key", "generate", "-o", id]);
          assert.equal(k.code, 0, k.stderr);
          writeKeys = ["--recipient", k.stdout.trim()];
          readKeys = ["--identity-file", id];
        }
        const a = spawnArchiver(f, dir, [...SMALL, ...writeKeys]);
        const made = await feedBursts(f, store, RUN, a, { bursts: 30, made: 0, rand });
        await waitFor(`a merged ${kind} segment`, () => mergedOf(store, 6), { exited: a.done });
        const r = await a.stop();
        assert.match(r.stdout, /compacted/, `${kind}: ${r.stderr}`);
        for (const p of await payloads(dir))
          assert.ok(
            !p.includes('"task_id"') && !p.includes("task_claimed"),
            `${kind}: plaintext in the store`,
          );
        const check = await f.cli(["--json", "dr", "list", "--from", dir, "--check", ...readKeys]);
        assert.equal(check.code, 0, check.stdout + check.stderr);
        for (const seq of await pointsInsideMerges(store, RUN, 2))
          await restoresAt(f, dir, RUN, seq, readKeys, "in-process");
        await restoresAt(f, dir, RUN, made - 1, readKeys);
      }
    });
  });

  it("dr archive-compact: an encrypted generation is skipped without its key, merged with it, and runs beside the archiver", async () => {
    await withSeed("ARCHIVE_BG_COMPACT_SEED", async (rand) => {
      const f = await archiveFixture(path.join(scratch.dir, "cmd"));
      const dir = path.join(f.dir, "store");
      const store = new LocalStore(dir);
      const pw = path.join(f.dir, "pw");
      await writeFile(pw, "correct horse\n", { mode: 0o600 });
      const keys = ["--encrypt", "--password-file", pw];
      const quiet = spawnArchiver(f, dir, [...keys, "--no-compact"]);
      let made = await feedBursts(f, store, RUN, quiet, { bursts: 12, made: 0, rand });
      await quiet.stop();
      const keyless = await f.cli(["--json", "dr", "archive-compact", "--from", dir]);
      assert.equal(keyless.code, 0, keyless.stderr);
      const skipped = JSON.parse(keyless.stdout) as { skipped: { reason: string }[]; merged: unknown[] };
      assert.equal(skipped.merged.length, 0);
      assert.match(skipped.skipped[0]!.reason, /--password-file/);

      const compact = async () => {
        const c = await f.cli([
          "--json",
          "dr",
          "archive-compact",
          "--from",
          dir,
          "--target-size",
          "2KiB",
          "--password-file",
          pw,
        ]);
        assert.equal(c.code, 0, c.stderr);
        return (JSON.parse(c.stdout) as { merged: unknown[] }).merged.length;
      };
      assert.ok((await compact()) > 0, "dr archive-compact merged nothing with the password");

      // The archiver compacts in the background while dr archive-compact runs beside it (which of
      // the two merges a piece first is a race; neither may break the other).
      const a = spawnArchiver(f, dir, [...SMALL, ...keys]);
      const feeding = feedBursts(f, store, RUN, a, { bursts: 20, made, rand });
      for (let i = 0; i < 3; i++) await compact();
      made = await feeding;
      await a.stop();
      const check = await f.cli(["--json", "dr", "list", "--from", dir, "--check", "--password-file", pw]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      for (const seq of await pointsInsideMerges(store, RUN, 3))
        await restoresAt(f, dir, RUN, seq, ["--password-file", pw], "in-process");
      await restoresAt(f, dir, RUN, made - 1, ["--password-file", pw]);
    });
  });
});
