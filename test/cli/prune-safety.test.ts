/**
 * `dr prune` and `dr schedule`'s prune when things are not as recorded: a kept backup rotted in
 * place (the newest intact one must survive), a store that refuses deletes part-way (what was
 * deleted is said and audited, the orphan record removed later), and a prune that fails after a
 * good scheduled backup (the backup is a success, the prune's failure its own).
 */
import assert from "node:assert/strict";
import { open, readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";

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
  });
});
