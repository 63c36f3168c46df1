/**
 * A sealed archive whose manifest names state the archive does not hold: a real backup rebuilt
 * with a file list that matches its files and a valid seal, but without the audit log, checkpoint
 * or WAL its `state` names (or naming a checkpoint id or WAL run that is not there). `dr verify`
 * fails it (exit 1); `dr restore` restores the files it holds and says what is missing.
 *
 * The faithful rebuild and the first hostile archive are verified and restored by real processes;
 * the other archives by main() in this process (runMain), the same command and environment.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { sealMember } from "../../src/dr/seal.js";
import type { Manifest } from "../../src/dr/manifest.js";
import { PYTHON_REFERENCE, makeBenchWorkspace, runCli, runMain, scratchDir } from "../helpers.js";
import { gz, sha, tarEntry } from "./support/craft.js";

test("dr verify fails an archive whose manifest names a WAL run, audit log or checkpoint it does not hold; restore warns", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const keyFile = path.join(dir, "key");
    const env = { BERNSTEIN_AUDIT_KEY_PATH: keyFile, BERNSTEIN_SDD: undefined, HOME: dir };
    const sdd = makeBenchWorkspace(path.join(dir, "w"), { files: 60, keyOut: keyFile });
    const real = path.join(dir, "b.tar.gz");
    assert.equal((await runCli(["--sdd", sdd, "dr", "backup", "--to", real, "--quiet"], { env })).code, 0);
    const unpacked = path.join(dir, "x");
    mkdirSync(unpacked);
    execFileSync("tar", ["-xzf", real, "-C", unpacked]);
    const original = JSON.parse(readFileSync(path.join(unpacked, "manifest.json"), "utf8")) as Manifest;

    /** The backup rebuilt without `drop` and with `edit` applied to its manifest, sealed as ours are. */
    let n = 0;
    const rebuilt = (drop: (rel: string) => boolean, edit: (m: Manifest) => void = () => {}): string => {
      const m = structuredClone(original);
      m.files = m.files.filter((f) => !drop(f.path));
      m.file_count = m.files.length + 1;
      m.total_bytes = m.files.reduce((s, f) => s + f.size, 0);
      edit(m);
      const parts = [
        tarEntry({ path: "manifest.json", data: Buffer.from(JSON.stringify(m, null, 2) + "\n") }),
      ];
      for (const d of m.dirs) parts.push(tarEntry({ path: `${d.path}/`, type: "Directory", mode: d.mode }));
      for (const f of m.files)
        parts.push(tarEntry({ path: f.path, data: readFileSync(path.join(unpacked, f.path)), mode: f.mode }));
      // No end-of-archive blocks: the seal member carries them (seal.ts).
      const member = gz(Buffer.concat(parts));
      const file = path.join(dir, `hostile-${n++}.tar.gz`);
      writeFileSync(file, Buffer.concat([member, sealMember(Buffer.from(sha(member), "hex"))]));
      return file;
    };
    type Run = (
      args: string[],
      opts: { env: typeof env },
    ) => Promise<{ code: number | null; stdout: string; stderr: string }>;
    const verify = (file: string, run: Run = runCli) => run(["dr", "verify", "--from", file], { env });

    // The rebuild itself is faithful: unchanged, it verifies.
    const same = await verify(rebuilt(() => false));
    assert.equal(same.code, 0, same.stdout + same.stderr);

    const audit = original.state.audit!.file;
    const checkpoint = original.state.checkpoint!;
    const isWal = (rel: string): boolean => /^runtime\/wal\/[^/]+\.wal\.jsonl$/.test(rel);
    const cases: [string, string, RegExp][] = [
      ["audit log removed", rebuilt((rel) => rel === audit), /\[FAIL\] audit: .*not in the archive/],
      [
        "checkpoint removed",
        rebuilt((rel) => rel === checkpoint.file),
        /\[FAIL\] checkpoint .*not in the archive/,
      ],
      [
        "checkpoint id that is not there",
        rebuilt(
          () => false,
          (m) => (m.state.checkpoint!.id = "cp-20990101T000000000Z-dead"),
        ),
        /\[FAIL\] checkpoint cp-20990101T000000000Z-dead: not in the archive/,
      ],
      [
        "no WAL, a run named at seq 100",
        rebuilt(isWal, (m) => (m.state.wal = { "run-x": { seq: 100, entry_hash: "0".repeat(64) } })),
        /\[FAIL\] wal run-x: not in the archive; the manifest records it at seq 100/,
      ],
      ["WAL removed", rebuilt(isWal), /\[FAIL\] wal \S+: not in the archive/],
    ];
    for (const [what, file, failure] of cases) {
      const run: Run = file === cases[0]![1] ? runCli : runMain;
      const r = await verify(file, run);
      assert.equal(r.code, 1, `${what}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, failure, what);
      assert.doesNotMatch(r.stdout, /\[skip\] wal: no WAL files|Archive verified/, what);
      const target = path.join(dir, `t${n++}`, ".sdd");
      const restored = await run(["dr", "restore", "--from", file, "--sdd", target], { env });
      assert.equal(restored.code, 0, `${what}: ${restored.stderr}`);
      assert.match(
        restored.stdout + restored.stderr,
        /the manifest names .*(which the archive does not hold|another checkpoint)/,
        what,
      );
      assert.ok(statSync(target).isDirectory());
    }

    // The Python reference's archives name no state: they verify as before.
    const ref = await verify(path.join(PYTHON_REFERENCE, "backup-plain.tar.gz"), runMain);
    assert.equal(ref.code, 0, ref.stdout + ref.stderr);
  } finally {
    await cleanup();
  }
});
