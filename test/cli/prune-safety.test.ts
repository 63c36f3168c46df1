/**
 * `dr prune` and `dr schedule`'s prune when things are not as recorded: a kept backup rotted in
 * place (the newest intact one must survive), a store that refuses deletes part-way (what was
 * deleted is said and audited, the orphan record removed later), and a prune that fails after a
 * good scheduled backup (the backup is a success, the prune's failure its own).
 */
import assert from "node:assert/strict";
import { open, readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { failAlways, startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";

const BUCKET = "prune-safety";

/** One byte changed in place: same size, so the record's size still agrees. */
async function rot(file: string): Promise<void> {
  const fh = await open(file, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 200);
    b[0] ^= 0xff;
    await fh.write(b, 0, 1, 200);
  } finally {
    await fh.close();
  }
}

describe("dr prune / dr schedule: the newest intact backup, and failures part-way (CLI, real child processes)", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let env: Record<string, string | undefined>;
  const cli = (args: string[]): Promise<CliResult> => runCli(args, { cwd: scratch.dir, env });
  /** Names of the backups `n` runs of `dr backup --to-dir at` wrote, oldest first. */
  const backups = async (at: string, n: number): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const b = await cli(["--json", "dr", "backup", "--to-dir", at]);
      assert.equal(b.code, 0, b.stderr);
      names.push(path.basename(JSON.parse(b.stdout).path));
    }
    return names;
  };

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-prune-safety-");
    env = { ...envFor(scratch.dir), ...h.env };
    // openCatalogue in this process reads the store's endpoint and keys from the environment.
    Object.assign(process.env, h.env);
    assert.equal((await cli(["init"])).code, 0);
    await addTask(new Workspace(path.join(scratch.dir, ".sdd")), { title: "one", command: "true" });
  });
  after(async () => {
    await h.close();
    await scratch.cleanup();
  });
  beforeEach(() => h.setFault(undefined));

  it("prune proves the backup it keeps as the newest verified: rotted ones are named and the newest intact one is kept", async () => {
    const at = path.join(scratch.dir, "rot");
    const names = await backups(at, 4);
    await rot(path.join(at, names[3]!));
    await rot(path.join(at, names[2]!));
    const r = await cli(["--json", "dr", "prune", "--at", at, "--keep-last", "1"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(
      doc.not_intact.map((n: { name: string }) => n.name),
      [names[3], names[2]],
    );
    assert.match(doc.not_intact[0].detail, /^replaced: sha256 /);
    assert.match(r.stderr, new RegExp(`warning: ${names[3]} does not match its record`));
    assert.deepEqual(
      doc.decisions.map((d: { name: string; action: string }) => [d.name, d.action]),
      [
        [names[3], "keep"],
        [names[2], "delete"],
        [names[1], "keep"],
        [names[0], "delete"],
      ],
    );
    assert.deepEqual(
      (await readdir(at)).filter((n) => n.endsWith(".tar.gz")).sort(),
      [names[1], names[3]].sort(),
    );
    const restored = await cli([
      "dr",
      "restore",
      "--from",
      path.join(at, names[1]!),
      "--sdd",
      path.join(scratch.dir, "r", ".sdd"),
    ]);
    assert.equal(restored.code, 0, restored.stderr);
    // --latest still takes the rotted newest (its record says verified); its failure names the
    // backup to take instead.
    const latest = await cli([
      "dr",
      "restore",
      "--latest",
      "--at",
      at,
      "--sdd",
      path.join(scratch.dir, "l", ".sdd"),
    ]);
    assert.equal(latest.code, 5, latest.stderr);
    assert.match(
      latest.stderr,
      new RegExp(
        `${names[3]}: .*; the next older verified backup there is \\S*${names[1]} \\(--from it\\)\\n$`,
      ),
    );
  });

  it("a prune the store stops part-way names what it deleted, audits it, and the next prune removes the orphan record", async () => {
    const root = `s3://${BUCKET}/partial/`;
    const names = await backups(root, 4);
    // The 3rd delete fails for good: the 3rd newest backup and its record went, then the 2nd newest's archive.
    let deletes = 0;
    h.setFault((op) => (op === "DeleteObject" && ++deletes >= 4 ? 503 : undefined));
    const r = await cli(["--json", "dr", "prune", "--at", root, "--keep-last", "1"]);
    h.setFault(undefined);
    assert.equal(r.code, 7, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, false);
    assert.deepEqual(doc.deleted_before_failure, [names[2], names[1]]);
    assert.match(r.stderr, new RegExp(`deleted before the failure: ${names[2]}, ${names[1]}\\n$`));

    const check = await cli(["--json", "dr", "list", "--at", root, "--check"]);
    assert.equal(check.code, 0, check.stdout);
    assert.deepEqual(
      JSON.parse(check.stdout).check.map((f: { name: string; status: string }) => [f.name, f.status]),
      [
        [names[0], "ok"],
        [names[3], "ok"],
      ],
    );
    const store = await openCatalogue(root);
    assert.ok(
      (await store.list()).some((o) => o.key === `${names[1]}.json`),
      "the orphan record is left",
    );
    const again = await cli(["--json", "dr", "prune", "--at", root, "--keep-last", "1"]);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout);
    assert.deepEqual(second.orphan_records, [`${names[1]}.json`]);
    assert.equal(second.deleted, 1);
    assert.deepEqual((await store.list()).map((o) => o.key).sort(), [names[3], `${names[3]}.json`].sort());
    assert.equal((await cli(["dr", "list", "--at", root, "--check"])).code, 0);
  });

  it("schedule: a prune that fails after a good backup leaves the run ok and the success metrics, and says the prune failed", async () => {
    const root = `s3://${BUCKET}/sched/`;
    await backups(root, 1);
    const metrics = path.join(scratch.dir, "b.prom");
    h.setFault(failAlways("DeleteObject"));
    const r = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      root,
      "--keep-last",
      "1",
      "--once",
      "--metrics-file",
      metrics,
    ]);
    h.setFault(undefined);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.match(r.stdout, / run 1 ok: s3:\/\/\S+ .*; prune FAILED: delete .*; nothing was deleted\n$/);
    const prom = await readFile(metrics, "utf8");
    assert.match(prom, /^bernstein_backup_last_run_success\{[^}]*\} 1$/m);
    assert.match(prom, /^bernstein_backup_last_success_timestamp_seconds\{[^}]*\} \d+$/m);
    assert.match(prom, /^bernstein_backup_failures_total\{[^}]*\} 0$/m);
    assert.match(prom, /^bernstein_backup_last_prune_success\{[^}]*\} 0$/m);
    assert.match(prom, /^bernstein_backup_prune_failures_total\{[^}]*\} 1$/m);

    h.setFault(failAlways("DeleteObject"));
    const j = await cli([
      "--json",
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      root,
      "--keep-last",
      "1",
      "--once",
    ]);
    h.setFault(undefined);
    assert.equal(j.code, 7, j.stderr);
    const row = JSON.parse(j.stdout.trim());
    assert.equal(row.ok, true);
    assert.equal(row.prune, null);
    assert.equal(row.prune_error.exit_code, 7);
    assert.deepEqual(row.prune_error.deleted_before_failure, []);
  });

  it("a prune where there is no workspace says the deletions are recorded nowhere", async () => {
    const at = path.join(scratch.dir, "elsewhere");
    await backups(at, 2);
    const r = await cli([
      "--sdd",
      path.join(scratch.dir, "none", ".sdd"),
      "dr",
      "prune",
      "--at",
      at,
      "--keep-last",
      "1",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /^warning: no workspace here \(--sdd\) to record this prune in: .*will report what was deleted as missing$/m,
    );
    const nothing = await cli([
      "--sdd",
      path.join(scratch.dir, "none", ".sdd"),
      "dr",
      "prune",
      "--at",
      at,
      "--keep-last",
      "1",
    ]);
    assert.equal(nothing.stderr, "", "nothing deleted, nothing to say");
  });

  it("schedule --once --count N is a usage error", async () => {
    const r = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      path.join(scratch.dir, "c"),
      "--once",
      "--count",
      "2",
    ]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^bernstein: dr schedule: --once is one run and --count N is N runs: give one of them\n$/,
    );
  });
});
