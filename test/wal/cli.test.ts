import assert from "node:assert/strict";
import { cp, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { PYTHON_REFERENCE, pythonReferenceFacts, runCli } from "../helpers.js";
import { WalWriter } from "../../src/wal/writer.js";
import { lines, record, scratchWorkspace } from "./support/wal-helpers.js";

const GOLDEN_SDD = path.join(PYTHON_REFERENCE, "workspace", ".sdd");
const expected = pythonReferenceFacts();

/** The Python reference WAL with entry 17 edited after it was hashed (a hash_mismatch at line 18). */
async function copyGoldenBrokenAtSeq17(file: string): Promise<void> {
  await cp(path.join(GOLDEN_SDD, "runtime", "wal", "run-golden.wal.jsonl"), file);
  const ls = await lines(file);
  ls[17] = ls[17].replace('"batch":17', '"batch":71');
  await writeFile(file, ls.join("\n") + "\n");
}

test("wal verify passes on the Python reference workspace; wal fingerprint equals expected.json", async () => {
  const v = await runCli(["--sdd", GOLDEN_SDD, "wal", "verify"]);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /run-golden: ok, 40 entries, last seq 39/);
  const j = await runCli(["--sdd", GOLDEN_SDD, "--json", "wal", "verify", "--run", "run-golden"]);
  const doc = JSON.parse(j.stdout);
  assert.equal(doc.ok, true);
  assert.equal(doc.runs[0].last_hash, expected.wal.last_entry_hash);
  const f = await runCli(["--sdd", GOLDEN_SDD, "wal", "fingerprint", "--run", "run-golden"]);
  assert.equal(f.code, 0, f.stderr);
  assert.equal(f.stdout.trim(), expected.wal.fingerprint);
  const fj = await runCli(["--sdd", GOLDEN_SDD, "wal", "fingerprint", "--run", "run-golden", "--json"]);
  assert.equal(JSON.parse(fj.stdout).fingerprint, expected.wal.fingerprint);
});

test("wal show streams entries, from a seq, only open intents, as JSON", async () => {
  const s = await runCli(["--sdd", GOLDEN_SDD, "wal", "show", "--run", "run-golden", "--from-seq", "38"]);
  assert.equal(s.code, 0, s.stderr);
  assert.deepEqual(
    s.stdout
      .trim()
      .split("\n")
      .map((l) => l.split("\t")[0]),
    ["38", "39"],
  );
  const u = await runCli([
    "--sdd",
    GOLDEN_SDD,
    "--json",
    "wal",
    "show",
    "--run",
    "run-golden",
    "--uncommitted",
  ]);
  const doc = JSON.parse(u.stdout);
  const index = (await lines(path.join(GOLDEN_SDD, "runtime", "wal", "uncommitted.idx.json"))).map((l) =>
    JSON.parse(l),
  );
  // Python's intents are never followed by a commit of the same type and inputs.
  assert.deepEqual(
    doc.entries.map((e: { seq: number; entry_hash: string }) => [e.seq, e.entry_hash]),
    index.map((r: { seq: number; entry_hash: string }) => [r.seq, r.entry_hash]),
  );
  assert.equal(doc.count, 14);
  // The JSON keeps the lines exactly (re-serialized in field order).
  const all = JSON.parse(
    (await runCli(["--sdd", GOLDEN_SDD, "--json", "wal", "show", "--run", "run-golden"])).stdout,
  );
  assert.equal(all.count, 40);
  const bad = await runCli(["--sdd", GOLDEN_SDD, "wal", "show", "--run", "run-golden", "--from-seq", "-1"]);
  assert.equal(bad.code, 2);
});

test("no workspace: one line suggesting bernstein init, exit 2", async () => {
  const { dir, cleanup } = await scratchWorkspace();
  try {
    for (const args of [
      ["wal", "verify"],
      ["wal", "show", "--run", "x"],
      ["wal", "fingerprint", "--run", "x"],
    ]) {
      const r = await runCli(["--sdd", path.join(dir, "nope"), ...args]);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /bernstein init/);
      assert.equal(r.stderr.trim().split("\n").length, 1);
    }
  } finally {
    await cleanup();
  }
});

test("an unknown --run is exit 2 and lists the runs there are", async () => {
  for (const args of [
    ["wal", "verify", "--run", "run-nope"],
    ["wal", "show", "--run", "run-nope"],
    ["wal", "fingerprint", "--run", "run-nope"],
  ]) {
    const r = await runCli(["--sdd", GOLDEN_SDD, ...args]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown run "run-nope".*: run-golden$/m);
  }
  const j = await runCli(["--sdd", GOLDEN_SDD, "--json", "wal", "verify", "--run", "run-nope"]);
  assert.deepEqual(JSON.parse(j.stdout).runs, ["run-golden"]);
});

test("wal show and wal fingerprint without --run read the newest run; no runs at all is exit 2, one line", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    const empty = await runCli(["--sdd", ws.root, "wal", "show"]);
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /^bernstein: no WAL runs in \S+ \(`bernstein start` records one\)\n$/);
    await cp(path.join(GOLDEN_SDD, "runtime", "wal", "run-golden.wal.jsonl"), ws.walFile("run-golden"));
    // Newer than run-golden by its first entry although its name sorts first.
    const w = await WalWriter.open(ws, "run-a-newer", { clock: () => 4_000_000_000 });
    await w.append(record(0));
    await w.append(record(1));
    await w.close();
    const show = await runCli(["--sdd", ws.root, "--json", "wal", "show"]);
    assert.equal(show.code, 0, show.stderr);
    assert.deepEqual([JSON.parse(show.stdout).run_id, JSON.parse(show.stdout).count], ["run-a-newer", 2]);
    const human = await runCli(["--sdd", ws.root, "wal", "show"]);
    assert.equal(human.stdout.trim().split("\n").length, 2);
    const fp = await runCli(["--sdd", ws.root, "--json", "wal", "fingerprint"]);
    assert.equal(fp.code, 0, fp.stderr);
    assert.equal(JSON.parse(fp.stdout).run_id, "run-a-newer");
    const golden = await runCli(["--sdd", ws.root, "wal", "fingerprint", "--run", "run-golden"]);
    assert.equal(golden.stdout.trim(), expected.wal.fingerprint);
  } finally {
    await cleanup();
  }
});

test("a broken WAL: verify exits 1 naming run, seq and line; show and fingerprint exit 5", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await copyGoldenBrokenAtSeq17(ws.walFile("run-golden"));
    const r = await runCli(["--sdd", ws.root, "wal", "verify"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /run-golden: seq 17, line 18: hash_mismatch/);
    const q = await runCli(["--sdd", ws.root, "--quiet", "wal", "verify"]);
    assert.equal(q.code, 1);
    assert.match(q.stderr, /run-golden: seq 17, line 18: hash_mismatch/);
    const j = JSON.parse((await runCli(["--sdd", ws.root, "--json", "wal", "verify"])).stdout);
    assert.deepEqual(
      [j.ok, j.runs[0].errors[0].run_id, j.runs[0].errors[0].seq, j.runs[0].errors[0].line],
      [false, "run-golden", 17, 18],
    );
    const s = await runCli(["--sdd", ws.root, "--json", "wal", "show", "--run", "run-golden"]);
    assert.equal(s.code, 5);
    const doc = JSON.parse(s.stdout);
    assert.equal(doc.count, 17, "entries before the break are shown");
    assert.match(doc.error, /seq 17, line 18/);
    const f = await runCli(["--sdd", ws.root, "wal", "fingerprint", "--run", "run-golden"]);
    assert.equal(f.code, 5);
    assert.doesNotMatch(f.stderr, /\n\s+at /);
  } finally {
    await cleanup();
  }
});

test("wal verify checks on its own thread unless --jobs asks for workers; the verdict is the same", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await copyGoldenBrokenAtSeq17(ws.walFile("run-golden"));
    const verdict = async (extra: string[]) => {
      const r = await runCli(["--sdd", ws.root, "--json", "wal", "verify", ...extra]);
      assert.equal(r.code, 1, r.stderr);
      const run = JSON.parse(r.stdout).runs[0];
      return { workers: run.workers, errors: run.errors, entries: run.entries, last_seq: run.last_seq };
    };
    const alone = await verdict([]);
    const two = await verdict(["--jobs", "2"]);
    assert.equal(alone.workers, 0);
    assert.equal(two.workers, 2);
    assert.deepEqual({ ...two, workers: 0 }, alone);
    const bad = await runCli(["--sdd", ws.root, "wal", "verify", "--jobs", "-1"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^bernstein: --jobs -1: must be an integer >= 0[^\n]*\n$/);
  } finally {
    await cleanup();
  }
});

test("a WAL path that is a folder or holds non-UTF-8 bytes is reported corrupt at its line, no stack trace", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    await mkdir(ws.walFile("run-dir"));
    await writeFile(ws.walFile("run-bin"), Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
    // Closed: on an open run, a WAL of bad lines alone is a torn tail that start cuts.
    await writeFile(
      path.join(ws.walDir, "run-bin.wal.closed"),
      JSON.stringify({
        run_id: "run-bin",
        closed_at: new Date(0).toISOString(),
        last_seq: -1,
        last_hash: "0".repeat(64),
      }),
    );
    const r = await runCli(["--sdd", ws.root, "wal", "verify"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /run-dir: seq 0, line 1: unreadable: .*is a folder/);
    assert.match(r.stdout, /run-bin: seq 0, line 1: invalid_utf8/);
    assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at |internal error/);
    const s = await runCli(["--sdd", ws.root, "wal", "show", "--run", "run-dir"]);
    assert.equal(s.code, 5);
    assert.match(s.stderr, /folder/);
    assert.doesNotMatch(s.stderr, /\n\s+at /);
  } finally {
    await cleanup();
  }
});
