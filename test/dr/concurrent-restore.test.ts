/**
 * Restores racing for the same target: real `bernstein dr restore` processes started together
 * (several seeded rounds), a restore lock held by a live or a dead process, and a target that
 * another process creates while a restore runs. Whatever the interleaving: every process exits 0
 * or 3, no stack trace, the target is the archive's state, and nothing is left beside it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { UserError } from "../../src/errors/errors.js";
import { restoreFromStream, restoreLockPath } from "../../src/dr/restore.js";
import { backupToFile } from "../../src/dr/backup.js";
import { initWorkspace, Workspace } from "../../src/workspace/layout.js";
import { processStartTime } from "../../src/workspace/lock.js";
import { makeBenchWorkspace, runCli, scratchDir, withSeed, type CliResult } from "../helpers.js";
import { snapshotTree } from "./support/workspace.js";

const ROUNDS = 4;
const RACERS = 3;

/** The restored tree without the per-restore record. */
function stateOf(root: string): string {
  const t = snapshotTree(root);
  t.delete("runtime/restored-from.json");
  return JSON.stringify([...t].sort());
}

interface Archives {
  env: Record<string, string | undefined>;
  plain: string;
  encrypted: string;
}

/**
 * A plain and (unless `plainOnly`) an encrypted backup of a bench workspace of `files` files,
 * made in process (what is raced here is the restore; `dr backup` has its own CLI tests).
 */
async function archivesOf(dir: string, files: number, plainOnly = false): Promise<Archives> {
  const keyFile = path.join(dir, "key", "audit.key");
  const env = {
    BERNSTEIN_AUDIT_KEY_PATH: keyFile,
    BERNSTEIN_SDD: undefined,
    BERNSTEIN_DR_PASSWORD: undefined,
    HOME: dir,
  };
  const source = makeBenchWorkspace(path.join(dir, "w"), { files, keyOut: keyFile });
  const plain = path.join(dir, "b.tar.gz");
  const ws = new Workspace(source);
  for (const password of plainOnly ? [undefined] : [undefined, "pw"])
    await backupToFile(ws, plain, { password, auditKeyPath: keyFile });
  return { env, plain, encrypted: `${plain}.enc` };
}

test(`${RACERS} concurrent restores into a missing target (${ROUNDS} seeded rounds): one restores, the others exit 3 or restore after it; nothing left behind`, () =>
  withSeed("BERNSTEIN_RACE_SEED", async (rand, seed) => {
    const { dir, cleanup } = await scratchDir();
    try {
      const { env, plain, encrypted } = await archivesOf(dir, 1000);
      // What each archive restores to, restored alone (in process: the racers are the CLI runs).
      const expected = new Map<string, string>();
      for (const [from, password] of [
        [plain, undefined],
        [encrypted, "pw"],
      ] as const) {
        const alone = path.join(dir, "alone", path.basename(from), ".sdd");
        await restoreFromStream(createReadStream(from), alone, {
          password,
          auditKeyPath: env.BERNSTEIN_AUDIT_KEY_PATH,
        });
        expected.set(from, stateOf(alone));
      }
      let refused = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const encrypt = rand() < 0.5;
        const parent = path.join(dir, `t${round}`);
        const target = path.join(parent, ".sdd");
        const from = encrypt ? encrypted : plain;
        const args = ["dr", "restore", "--from", from, "--sdd", target, "--json"];
        // The password from the environment: --password would add its warning line to stderr.
        const runEnv = encrypt ? { ...env, BERNSTEIN_DR_PASSWORD: "pw" } : env;
        // Staggered starts vary the interleaving; the assertions hold for every interleaving.
        const starts = Array.from({ length: RACERS }, () => Math.floor(rand() * 30));
        const results: CliResult[] = await Promise.all(
          starts.map(async (ms) => {
            await delay(ms);
            return runCli(args, { env: runEnv });
          }),
        );
        const ctx = `seed ${seed} (BERNSTEIN_RACE_SEED), round ${round}, encrypted ${encrypt}, starts ${starts.join(",")} ms`;
        let restored = 0;
        for (const r of results) {
          assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, `${ctx}: ${r.stderr}`);
          if (r.code === 0) {
            restored++;
            continue;
          }
          assert.equal(r.code, 3, `${ctx}: exit ${r.code}: ${r.stderr}`);
          refused++;
          assert.match(r.stderr, /^bernstein: \S+ is being restored by pid \d+ .*\(dr restore\).*\n$/, ctx);
          const doc = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
            exit_code: number;
            holder: { pid: number };
          };
          assert.equal(doc.exit_code, 3, ctx);
          assert.equal(typeof doc.holder.pid, "number", ctx);
        }
        assert.ok(restored >= 1, `${ctx}: no restore succeeded`);
        // A racer that got the lock only after the winner finished restored over it (keeping it):
        // that is an ordinary second restore. Nothing else may remain beside the target.
        const names = (await readdir(parent)).sort();
        const keptCopies = names.filter((n) => /^\.sdd\.pre-restore-\d{8}T\d{6}Z(-\d+)?$/.test(n));
        assert.equal(keptCopies.length, restored - 1, `${ctx}: ${names.join(" ")}`);
        assert.deepEqual(
          names.filter((n) => !keptCopies.includes(n)),
          [".sdd"],
          `${ctx}: left beside the target: ${names.join(" ")}`,
        );
        assert.ok(stateOf(target) === expected.get(from), `${ctx}: the target is not the archive's state`);
      }
      // Not a condition of correctness, but the test would prove nothing if no race ever happened.
      assert.ok(refused > 0, `seed ${seed}: no restore was ever refused: the racers never overlapped`);
    } finally {
      await cleanup();
    }
  }));

test("a restore lock beside a missing target held by a live process: exit 3 naming it, nothing written; a dead holder's lock is taken over", async () => {
  const { dir, cleanup } = await scratchDir();
  const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    const { env, plain } = await archivesOf(dir, 50, true);
    const parent = path.join(dir, "t");
    const target = path.join(parent, ".sdd");
    const lockFile = restoreLockPath(target);
    assert.equal(path.dirname(lockFile), parent, "the lock is beside the target");
    await mkdir(parent);
    const lockBody = JSON.stringify({
      pid: holder.pid,
      start_time: processStartTime(holder.pid!),
      hostname: os.hostname(),
      acquired_at: "2026-01-01T00:00:00Z",
      command: "dr restore",
    });
    await writeFile(lockFile, lockBody);
    const r = await runCli(["dr", "restore", "--from", plain, "--sdd", target, "--json"], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(
      r.stderr,
      `bernstein: ${target} is being restored by pid ${holder.pid} on ${os.hostname()} (dr restore), since 2026-01-01T00:00:00Z; wait for it to finish, then restore again if you still need to\n`,
    );
    assert.equal(JSON.parse(r.stdout.trim().split("\n").at(-1)!).holder.pid, holder.pid);
    // --force is about a workspace's own lock, never about another restore of it.
    const forced = await runCli(["dr", "restore", "--from", plain, "--sdd", target, "--force"], { env });
    assert.equal(forced.code, 3, forced.stderr);
    assert.deepEqual(await readdir(parent), [path.basename(lockFile)]);
    assert.equal(await readFile(lockFile, "utf8"), lockBody, "the holder's lock is untouched");

    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.on("exit", resolve));
    const after = await runCli(["dr", "restore", "--from", plain, "--sdd", target], { env });
    assert.equal(after.code, 0, after.stderr);
    assert.match(
      after.stderr,
      new RegExp(`restore lock: took over stale lock of pid ${holder.pid} .*not running`),
    );
    assert.deepEqual(await readdir(parent), [".sdd"], "the lock goes with the restore");
  } finally {
    holder.kill("SIGKILL");
    await cleanup();
  }
});

test("a target created by another process while a restore runs: exit 3, its staging folder removed, the new folder untouched", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { plain } = await archivesOf(dir, 50, true);
    const parent = path.join(dir, "t");
    const target = path.join(parent, ".sdd");
    // The archive's bytes, and an `init` of the target once the restore has started reading.
    async function* bytesThenInit(): AsyncGenerator<Buffer> {
      let first = true;
      for await (const chunk of createReadStream(plain)) {
        yield chunk as Buffer;
        if (first) await initWorkspace(target);
        first = false;
      }
    }
    const err = await restoreFromStream(bytesThenInit(), target).then(
      () => assert.fail("the restore must not replace a folder it did not see"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UserError, String((err as Error).stack));
    assert.equal(err.exitCode, 3);
    assert.match(err.message, /was created by another process while this restore ran; nothing was changed/);
    assert.deepEqual(await readdir(parent), [".sdd"], "no staging folder, no lock");
    assert.ok(!existsSync(path.join(target, "runtime", "restored-from.json")));
    assert.deepEqual(await readdir(path.join(target, "docs")), [], "the new workspace is as init made it");
  } finally {
    await cleanup();
  }
});
