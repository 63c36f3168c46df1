/**
 * SIGKILL at random moments: a killed backup leaves no partial file at the destination (killed
 * after its rename, the archive there is whole); a killed restore
 * leaves the old state or the complete new one (after the roll-forward every later `dr restore`
 * performs), never a mix. 6 moments each in the suite, 20 in `npm run soak`
 * (BERNSTEIN_DR_KILL_ROUNDS). The moments come from a seeded PRNG: a failure names its seed, and
 * BERNSTEIN_DR_KILL_SEED=<seed> runs the same schedule again.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { completeInterruptedRestore } from "../../src/dr/restore.js";
import { envFor, makeBenchWorkspace, runCli, scratchDir, withSeed, CLI_ARGV, cliEnv } from "../helpers.js";
import { snapshotTree } from "./support/workspace.js";

// The suite runs 6 moments each to stay fast; `npm run soak` runs 20.
const ROUNDS = Number(process.env.BERNSTEIN_DR_KILL_ROUNDS ?? 6);

/** Runs the CLI and SIGKILLs it after `delayMs` (if still running). Resolves with the exit. */
function runAndKill(
  args: string[],
  env: Record<string, string | undefined>,
  delayMs: number,
): Promise<{ killed: boolean; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI_ARGV, ...args], {
      env: cliEnv(env),
      stdio: "ignore",
    });
    let exited = false;
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, delayMs);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      exited = true;
      clearTimeout(timer);
      resolve({ killed: signal === "SIGKILL", code });
    });
  });
}

async function timed(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const t0 = Date.now();
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, r.stderr);
  return Date.now() - t0;
}

/**
 * The shorter of two timed runs. The kill moments are drawn within it, so that most fall inside a
 * run: one first run made slow by the machine (the suite's other tests, a file system still
 * writing back what they removed) would put them after most runs had finished.
 */
async function shorterOfTwo(run: () => Promise<number>): Promise<number> {
  const first = await run();
  return Math.min(first, await run());
}

/** The restored tree without the per-restore record. */
function stateOf(root: string): string {
  const t = snapshotTree(root);
  t.delete("runtime/restored-from.json");
  return JSON.stringify([...t].sort());
}

test(`SIGKILL during backup (${ROUNDS} seeded random moments) leaves no partial file at the destination; SIGKILL during restore leaves old or new, never a mix`, () =>
  withSeed("BERNSTEIN_DR_KILL_SEED", async (rand) => {
    const { dir, cleanup } = await scratchDir();
    try {
      const env = envFor(dir);
      const sdd = makeBenchWorkspace(path.join(dir, "w"), {
        files: 1500,
        keyOut: path.join(dir, "key", "audit.key"),
      });
      const out = path.join(dir, "out");
      execFileSync("mkdir", ["-p", out]);

      const dest = path.join(out, "b.tar.gz");
      const full = await shorterOfTwo(async () => {
        const ms = await timed(["dr", "backup", "--to", dest, "--sdd", sdd], env);
        await rm(dest);
        return ms;
      });
      let killedBeforeDone = 0;
      for (let i = 0; i < ROUNDS; i++) {
        const r = await runAndKill(["dr", "backup", "--to", dest, "--sdd", sdd], env, rand() * full);
        if (!r.killed) assert.equal(r.code, 0);
        if (existsSync(dest)) {
          // Not killed, or killed after the rename (while logging the backup): then it is whole,
          // and a .sha256 beside it (the dry-run reads it) is its own, never an older one's.
          const check = await runCli(["dr", "restore", "--from", dest, "--dry-run"], { env });
          assert.equal(check.code, 0, `round ${i}: a partial archive at the destination: ${check.stderr}`);
          await rm(dest);
        } else {
          assert.ok(r.killed, `round ${i}: a finished backup left nothing`);
          killedBeforeDone++;
        }
      }
      assert.ok(
        killedBeforeDone >= ROUNDS / 3,
        `only ${killedBeforeDone} of ${ROUNDS} backups were killed mid-way`,
      );
      // The next backup cleans up the temp files of killed ones: the archive's and its sidecar's
      // (one of each, of a process that is gone, whatever the kills above left).
      const gone = spawnSync("true").pid!;
      await writeFile(path.join(out, `.b.tar.gz.tmp-${gone}-0badc0de`), "partial");
      await writeFile(path.join(out, `.b.tar.gz.sha256.tmp-${gone}-0badc0de`), "partial");
      assert.equal((await runCli(["dr", "backup", "--to", dest, "--sdd", sdd], { env })).code, 0);
      assert.deepEqual((await readdir(out)).sort(), ["b.tar.gz", "b.tar.gz.sha256"]);
      const verify = await runCli(["dr", "restore", "--from", dest, "--dry-run", "--json"], { env });
      assert.equal(verify.code, 0, verify.stderr);

      // Restore: the target starts as the OLD state; the archive holds a NEW one.
      const target = path.join(dir, "t", ".sdd");
      assert.equal((await runCli(["dr", "restore", "--from", dest, "--sdd", target], { env })).code, 0);
      const oldState = stateOf(target);
      await writeFile(path.join(sdd, "docs", "new-after-old.md"), "new\n");
      const destNew = path.join(out, "new.tar.gz");
      assert.equal((await runCli(["dr", "backup", "--to", destNew, "--sdd", sdd], { env })).code, 0);
      const probe = (n: number) => path.join(dir, `probe${n}`, ".sdd");
      let probes = 0;
      const restoreMs = await shorterOfTwo(() =>
        timed(["dr", "restore", "--from", destNew, "--sdd", probe(++probes)], env),
      );
      const newState = stateOf(probe(1));
      assert.notEqual(oldState, newState);
      let killedDuringRestore = 0;
      let sawNew = 0;
      for (let i = 0; i < ROUNDS; i++) {
        const r = await runAndKill(
          ["dr", "restore", "--from", destNew, "--sdd", target, "--no-keep"],
          env,
          rand() * restoreMs,
        );
        if (r.killed) killedDuringRestore++;
        // What the next `dr restore` (or doctor) does first: finish or undo an interrupted swap.
        await completeInterruptedRestore(target);
        const now = stateOf(target);
        assert.ok(
          now === oldState || now === newState,
          `round ${i}: the target is neither the old nor the new state`,
        );
        if (now === newState) {
          sawNew++;
          // Back to the old state for the next round.
          assert.equal(
            (
              await runCli(["dr", "restore", "--from", dest, "--sdd", target, "--no-keep", "--force"], {
                env,
              })
            ).code,
            0,
          );
          assert.equal(stateOf(target), oldState);
        }
      }
      assert.ok(
        killedDuringRestore >= ROUNDS / 2,
        `only ${killedDuringRestore} of ${ROUNDS} restores were killed mid-way`,
      );
      // No staging folders, journals or journal temp files survive a later restore (one of a
      // process that is gone is planted, whatever the kills above left).
      await writeFile(
        path.join(path.dirname(target), `...sdd.restore-journal.json.tmp-${gone}-0badc0de`),
        "{",
      );
      assert.equal(
        (await runCli(["dr", "restore", "--from", dest, "--sdd", target, "--no-keep"], { env })).code,
        0,
      );
      const left = (await readdir(path.dirname(target))).filter((n) => n !== ".sdd");
      assert.deepEqual(left, [], `left beside the target: ${left.join(", ")}`);
      void sawNew;
    } finally {
      await cleanup();
    }
  }));
