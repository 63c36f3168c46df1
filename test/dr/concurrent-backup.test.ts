/**
 * Backups racing for the same `--to` name: real `bernstein dr backup` processes started together
 * (several seeded rounds). One wins the name, the other is refused (exit 6), and the loser leaves
 * the winner's archive, its `.sha256` sidecar and its row in runs/backups.jsonl as they are.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { makeBenchWorkspace, runCli, scratchDir, withSeed, type CliResult } from "../helpers.js";
import { sha } from "./support/craft.js";

const ROUNDS = 3;

test(`two concurrent dr backup --to the same name (${ROUNDS} seeded rounds): the loser exits 6 and leaves the winner's archive, sidecar and record`, () =>
  withSeed("BERNSTEIN_RACE_SEED", async (rand, seed) => {
    const { dir, cleanup } = await scratchDir();
    try {
      const keyFile = path.join(dir, "key", "audit.key");
      const env = {
        BERNSTEIN_AUDIT_KEY_PATH: keyFile,
        BERNSTEIN_SDD: undefined,
        BERNSTEIN_DR_PASSWORD: undefined,
        HOME: dir,
      };
      // Large enough that both runs are still writing when either checks the destination.
      const sdd = makeBenchWorkspace(path.join(dir, "w"), { files: 2000, keyOut: keyFile });
      for (let round = 0; round < ROUNDS; round++) {
        const folder = path.join(dir, `bk${round}`);
        await mkdir(folder);
        const archive = path.join(folder, "cc.tar.gz");
        // Staggered starts vary the interleaving; the assertions hold for every interleaving.
        const starts = [0, 1].map(() => Math.floor(rand() * 40));
        const results: CliResult[] = await Promise.all(
          starts.map(async (ms) => {
            await delay(ms);
            return runCli(["--sdd", sdd, "dr", "backup", "--to", archive, "--quiet"], { env });
          }),
        );
        const ctx = `seed ${seed} (BERNSTEIN_RACE_SEED), round ${round}, starts ${starts.join(",")} ms`;
        const codes = results.map((r) => r.code).sort();
        assert.deepEqual(codes, [0, 6], `${ctx}: ${results.map((r) => r.stderr).join(" | ")}`);
        const loser = results.find((r) => r.code === 6)!;
        assert.match(loser.stderr, /^bernstein: \S+cc\.tar\.gz already exists; not replacing a backup/, ctx);

        assert.deepEqual((await readdir(folder)).sort(), ["cc.tar.gz", "cc.tar.gz.sha256"], ctx);
        const archiveSha = sha(await readFile(archive));
        assert.equal(
          await readFile(`${archive}.sha256`, "utf8"),
          `${archiveSha}  cc.tar.gz\n`,
          `${ctx}: the sidecar names the archive in place`,
        );
        const rows = (await readFile(path.join(sdd, "runs", "backups.jsonl"), "utf8"))
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { location: string; sha256: string })
          .filter((r) => r.location === archive);
        assert.deepEqual(
          rows.map((r) => r.sha256),
          [archiveSha],
          `${ctx}: one record, of the archive in place`,
        );
      }
    } finally {
      await cleanup();
    }
  }));
