/**
 * SIGKILL of a running `dr archive` at seeded random moments while decisions are being made:
 * every restart resumes the same generation, nothing is missing or doubled, and no object name
 * (segment, snapshot, index, generation record) ever holds other bytes than when first seen.
 * Seed: $ARCHIVE_KILL_SEED, printed on failure.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { prng, scratchDir, spawnCli, waitFor } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  storeObjects,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const RUN = "run-kill";
const ROUNDS = 30;

describe("dr archive killed with SIGKILL at random moments", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-kill-");
    f = await archiveFixture(scratch.dir);
  });
  after(async () => scratch.cleanup());

  it(`${ROUNDS} rounds: resumes, no gap, no duplicate, objects rewritten identically`, async () => {
    const seed = Number(process.env.ARCHIVE_KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const why = (msg: string) => `${msg} (ARCHIVE_KILL_SEED=${seed})`;
    const rand = prng(seed);
    const store = path.join(scratch.dir, "store");
    const seen = new Map<string, string>();
    let made = 5;
    let cycles = 0;
    await appendDecisions(f.ws, RUN, made);
    for (let round = 0; round < ROUNDS; round++) {
      // Half the rounds take a snapshot once a second has passed since the last, so some kills
      // land between a snapshot and its index.
      const snapshots = rand() < 0.5 ? ["--snapshot-interval", "1s"] : [];
      const spawned = Date.now();
      const { child, done } = spawnCli(
        ["--sdd", f.sdd, "dr", "archive", "--to", store, "--interval", "10ms", ...snapshots],
        {
          env: f.env,
          cwd: scratch.dir,
        },
      );
      // Decisions keep coming while the archiver runs; the kill lands at a random instant of that.
      const burst = 1 + Math.floor(rand() * 40);
      const writing = appendDecisions(f.ws, RUN, burst, made);
      made += burst;
      // Most kills land after the archiver's first cycle of this round (status written by its pid),
      // the rest anywhere from its start (snapshot, listing, the first puts).
      if (rand() < 0.7) {
        await waitFor(
          "a shipping cycle of this archiver",
          async () => {
            // The archiver announces itself before its first cycle, with the caught-up time of
            // the previous round's: wait for the cycle itself.
            const s = await readArchiveStatus(f.sdd);
            return (
              s !== undefined &&
              s.pid === child.pid &&
              s.caught_up_at !== null &&
              Date.parse(s.caught_up_at) >= spawned
            );
          },
          { exited: done },
        );
        cycles++;
      }
      const delay = Math.floor(rand() * (cycles > 0 ? 60 : 400));
      await new Promise((r) => setTimeout(r, delay));
      child.kill("SIGKILL");
      const r = await done;
      await writing;
      assert.equal(r.signal, "SIGKILL", why(`round ${round}: ${r.stderr}`));
      for (const [name, sha] of await storeObjects(store)) {
        const before = seen.get(name);
        if (before !== undefined) assert.equal(sha, before, why(`${name} rewritten with other bytes`));
        seen.set(name, sha);
      }
    }
    assert.ok(cycles > 0, why("no kill landed after a cycle"));
    const last = await f.cli(["--json", "dr", "archive", "--to", store, "--once"]);
    assert.equal(last.code, 0, why(last.stderr));
    const list = await f.cli(["--json", "dr", "archive-list", "--from", store, "--check"]);
    assert.equal(list.code, 0, why(list.stdout + list.stderr));
    const gens = JSON.parse(list.stdout).generations;
    assert.equal(gens.length, 1, why(JSON.stringify(gens.map((g: { cause: string }) => g.cause))));
    assert.deepEqual(gens[0].gaps, [], why("gaps"));
    const restored = path.join(scratch.dir, "restored", ".sdd");
    const rr = await f.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], restored);
    assert.equal(rr.code, 0, why(rr.stderr));
    assert.equal(JSON.parse(rr.stdout).wal[RUN].seq, made - 1, why("restored WAL end"));
    const restoredWal = await readFile(path.join(restored, "runtime", "wal", `${RUN}.wal.jsonl`));
    assert.ok(restoredWal.equals(await readFile(f.ws.walFile(RUN))), why("restored WAL differs"));
  });
});
