/**
 * `dr backup` of a workspace whose WAL is broken in the middle: the backup is taken (in a
 * disaster it may be the best copy there is) but does not hide the damage: one warning line
 * naming the run and seq, `warnings` in --json, `wal_breaks` in the manifest, and `dr verify`
 * of the archive fails (exit 1) saying the break was there at backup time, and `dr restore` of it
 * warns again (the restored workspace holds the damage). An intact WAL leaves
 * the manifest as it was (no `wal_breaks`).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { runCli, scratchDir } from "../helpers.js";
import { manifestOf, ranOneTask } from "./support/workspace.js";

test("dr backup of a WAL broken in the middle warns, records it in the manifest, and dr verify reports it", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-wal-break-");
  t.after(cleanup);
  const { env, cli, walFile, runId } = await ranOneTask(dir);

  const intact = path.join(dir, "intact.tar.gz");
  const clean = await cli("dr", "backup", "--to", intact);
  assert.equal(clean.code, 0, clean.stderr);
  assert.doesNotMatch(clean.stderr, /chain broken/);
  assert.equal("wal_breaks" in manifestOf(intact), false, "an intact WAL adds nothing to the manifest");

  const lines = readFileSync(walFile, "utf8").split("\n");
  lines[3] = lines[3]!.replace('"actor":"orchestrator"', '"actor":"orchestratoR"');
  writeFileSync(walFile, lines.join("\n"));

  const archive = path.join(dir, "broken.tar.gz");
  const human = await cli("dr", "backup", "--to", archive);
  assert.equal(human.code, 0, human.stderr);
  const warned = human.stderr.split("\n").filter((l) => /chain broken/.test(l));
  assert.equal(warned.length, 1, human.stderr);
  assert.match(warned[0]!, new RegExp(`^warning: wal run ${runId}: chain broken at seq 3 \\(line 4`));

  const json = await cli("--json", "dr", "backup", "--to", path.join(dir, "broken2.tar.gz"));
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { warnings: string[] };
  assert.ok(
    report.warnings.some((w) => w.includes(`wal run ${runId}: chain broken at seq 3`)),
    json.stdout,
  );

  const breaks = manifestOf(archive).wal_breaks as { run_id: string; seq: number; line: number }[];
  assert.deepEqual(
    breaks.map((b) => [b.run_id, b.seq, b.line]),
    [[runId, 3, 4]],
  );

  const restored = path.join(dir, "restored", ".sdd");
  const restore = await runCli(["--sdd", restored, "dr", "restore", "--from", archive], { env });
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(
    restore.stderr,
    new RegExp(
      `^warning: wal run ${runId}: chain broken at seq 3 \\(line 4: \\w+\\) when this backup was taken`,
      "m",
    ),
  );

  const verify = await runCli(["dr", "verify", "--from", archive], { env });
  assert.equal(verify.code, 1, verify.stdout + verify.stderr);
  assert.match(
    verify.stdout,
    /\[FAIL\] wal .*at seq 3, line 4 \(broken in the workspace when it was backed up/,
  );
});

test("dr backup copies a closed run's bad last line as found and names it (no writer tore it: start refuses it, live or restored)", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-closed-bad-last-");
  t.after(cleanup);
  const { env, cli, walFile } = await ranOneTask(dir);
  const lines = readFileSync(walFile, "utf8").split("\n");
  lines[lines.length - 2] = lines.at(-2)!.replace('"actor":"orchestrator"', '"actor":"orchestratoR"');
  writeFileSync(walFile, lines.join("\n"));

  const lastSeq = lines.length - 2; // one line per seq from 0, and the empty string after the last newline
  assert.equal((await cli("start", "--until-idle")).code, 9, "the live workspace: start refuses it");

  const archive = path.join(dir, "bk.tar.gz");
  const backup = await cli("dr", "backup", "--to", archive);
  assert.equal(backup.code, 0, backup.stderr);
  assert.doesNotMatch(backup.stderr, /left out/);
  assert.match(backup.stderr, new RegExp(`^warning: wal run \\S+: chain broken at seq ${lastSeq} `, "m"));
  const copied = execFileSync("tar", ["-xzOf", archive, `runtime/wal/${path.basename(walFile)}`], {
    encoding: "utf8",
  });
  assert.equal(copied, lines.join("\n"), "copied as found");
  const verify = await runCli(["dr", "verify", "--from", archive], { env });
  assert.equal(verify.code, 1, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /\[FAIL\] wal .*\(broken in the workspace when it was backed up/);
  const restored = path.join(dir, "restored", ".sdd");
  assert.equal((await runCli(["--sdd", restored, "dr", "restore", "--from", archive], { env })).code, 0);
  const start = await runCli(["--sdd", restored, "start", "--until-idle"], { env });
  assert.equal(start.code, 9, "what dr verify announced: start refuses the restored copy");
});
