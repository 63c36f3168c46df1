/**
 * File names a backup cannot carry so that its restore recreates them (equal to another after
 * Unicode normalization, a backslash, a path past the restore's limit): the backup is refused
 * before anything is written, never written without the file or as an archive its own restore
 * refuses. Names that are not UTF-8 are carried as their bytes, both ways with Python's tarfile.
 * Real files, the real CLI.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { PYTHON_REFERENCE, envFor, pythonReferenceFacts, runCli, scratchDir } from "../helpers.js";

/** The names of a folder as bytes, as hex (what a restore must recreate exactly). */
const namesOf = (dir: string | Buffer): string[] =>
  readdirSync(dir, { encoding: "buffer" })
    .map((b) => b.toString("hex"))
    .sort();

interface Case {
  name: string;
  /** Creates the file(s) in `sdd`; returns the word the refusal must name. */
  make(sdd: string): string;
  problem: RegExp;
}

const cases: Case[] = [
  {
    name: "NFC and NFD of one name",
    make: (sdd) => {
      writeFileSync(path.join(sdd, "memory", "caf\u00e9.md"), "NFC");
      writeFileSync(path.join(sdd, "memory", "cafe\u0301.md"), "NFD");
      return `'.sdd/memory/caf\u00e9.md'`;
    },
    problem: /same name as \$'\.sdd\/memory\/cafe\\xcc\\x81\.md' after Unicode normalization/,
  },
  {
    name: "backslash",
    make: (sdd) => {
      writeFileSync(path.join(sdd, "memory", "back\\slash.md"), "x");
      return `'.sdd/memory/back\\slash.md'`;
    },
    problem: /backslash in name/,
  },
  {
    name: "path over 4000 bytes",
    make: (sdd) => {
      // 19 folders of 200 bytes and a 180-byte name: 4,006 bytes below .sdd/.
      const parts = Array.from({ length: 19 }, (_, i) => String(i).padEnd(200, "d"));
      const folder = path.join(sdd, "memory", ...parts);
      mkdirSync(folder, { recursive: true });
      writeFileSync(path.join(folder, "x".repeat(180)), "deep");
      return path.join(".sdd", "memory", ...parts, "x".repeat(180));
    },
    problem: /name longer than 4000 bytes/,
  },
];

for (const c of cases) {
  test(`a name a restore cannot recreate (${c.name}) refuses the backup, the dry run and the drill; renamed, it backs up and restores`, async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const env = envFor(dir);
      const run = (args: string[]) => runCli(args, { cwd: dir, env });
      assert.equal((await run(["init"])).code, 0);
      const sdd = path.join(dir, ".sdd");
      const word = c.make(sdd);
      const before = await readdir(dir);

      const r = await run(["dr", "backup", "--to", "bk.tar.gz", "--json"]);
      assert.equal(r.code, 5, r.stderr);
      const doc = JSON.parse(r.stdout) as { ok: boolean; problem: string; path: string; error: string };
      assert.equal(doc.ok, false);
      assert.equal(doc.problem, "unarchivable-name");
      assert.equal(doc.path, word);
      assert.match(doc.error, c.problem);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.startsWith(`bernstein: backup refused: ${word}: `), lines[0]);
      // Nothing written: no archive, no temp file, no backup recorded.
      assert.deepEqual(await readdir(dir), before);
      assert.equal(existsSync(path.join(sdd, "runs", "backups.jsonl")), false);

      const dry = await run(["dr", "backup", "--to", "bk.tar.gz", "--dry-run"]);
      assert.equal(dry.code, 5);
      assert.match(dry.stderr, c.problem);
      const toDir = await run(["dr", "backup", "--to-dir", "bk"]);
      assert.equal(toDir.code, 5);
      assert.deepEqual(await readdir(path.join(dir, "bk")), []);
      const drill = await run(["dr", "drill"]);
      assert.equal(drill.code, 1, drill.stdout);
      assert.match(drill.stdout, c.problem);

      // The word is one a shell takes back: renamed through it, the backup holds the file.
      execFileSync("bash", ["-c", `mv -- ${word} .sdd/memory/renamed.md`], { cwd: dir });
      const ok = await run(["dr", "backup", "--to", "bk.tar.gz"]);
      assert.equal(ok.code, 0, ok.stderr);
      const target = path.join(dir, "restored", ".sdd");
      const back = await run(["dr", "restore", "--from", "bk.tar.gz", "--sdd", target]);
      assert.equal(back.code, 0, back.stderr);
      for (const sub of ["docs", "memory"])
        assert.deepEqual(namesOf(path.join(target, sub)), namesOf(path.join(sdd, sub)), sub);
      assert.equal(
        await readFile(path.join(target, "memory", "renamed.md"), "utf8"),
        await readFile(path.join(sdd, "memory", "renamed.md"), "utf8"),
      );
      assert.equal((await run(["dr", "drill"])).code, 0);
    } finally {
      await cleanup();
    }
  });
}

test("names that are not UTF-8 back up as their bytes: our restore, the drill and Python's tarfile recreate them exactly", async (t) => {
  try {
    execFileSync("python3", ["-c", "import tarfile"], { stdio: "ignore" });
  } catch {
    t.skip("python3 not installed");
    return;
  }
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const run = (args: string[]) => runCli(args, { cwd: dir, env });
    assert.equal((await run(["init"])).code, 0);
    const sdd = path.join(dir, ".sdd");
    const latin1 = (s: string): Buffer => Buffer.from(s, "latin1");
    // A folder and files named in Latin-1, one past ustar's 100 bytes.
    mkdirSync(latin1(`${sdd}/docs/caf\xe9`));
    const made: [string, string][] = [
      ["docs/r\xe9sum\xe9.md", "latin-1"],
      ["docs/caf\xe9/x\xff.md", "inside"],
      [`docs/${"\xe9".repeat(120)}.md`, "long"],
    ];
    for (const [name, data] of made) writeFileSync(latin1(`${sdd}/${name}`), data);
    const r = await run(["dr", "backup", "--to", "bk.tar.gz", "--json"]);
    assert.equal(r.code, 0, r.stderr);

    // The manifest names them as Python's json.dumps would: each byte a lone surrogate.
    const names = execFileSync("python3", [
      "-c",
      `import json, os, sys, tarfile
with tarfile.open(sys.argv[1]) as a:
    files = [f["path"] for f in json.load(a.extractfile("manifest.json"))["files"]]
    a.extractall(sys.argv[2])
print(json.dumps(sorted(os.fsencode(f).hex() for f in files if f.startswith("docs/"))))
print(json.dumps(sorted(n.hex() for n in os.listdir(os.path.join(sys.argv[2].encode(), b"docs")))))`,
      path.join(dir, "bk.tar.gz"),
      path.join(dir, "py"),
    ])
      .toString()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as string[]);
    assert.deepEqual(names[0], made.map(([n]) => latin1(n).toString("hex")).sort());
    assert.deepEqual(names[1], namesOf(path.join(sdd, "docs")));

    const target = path.join(dir, "restored", ".sdd");
    const back = await run(["dr", "restore", "--from", "bk.tar.gz", "--sdd", target]);
    assert.equal(back.code, 0, back.stderr);
    for (const root of [target, path.join(dir, "py")]) {
      assert.deepEqual(namesOf(path.join(root, "docs")), namesOf(path.join(sdd, "docs")), root);
      assert.deepEqual(namesOf(latin1(`${root}/docs/caf\xe9`)), [latin1("x\xff.md").toString("hex")]);
      for (const [name, data] of made) assert.equal(readFileSync(latin1(`${root}/${name}`), "utf8"), data);
    }
    assert.equal((await run(["dr", "drill"])).code, 0);
    assert.equal((await run(["dr", "verify", "--from", "bk.tar.gz"])).code, 0);
  } finally {
    await cleanup();
  }
});

test("names that are UTF-8 but not ASCII (NFC and NFD, one of each) back up and restore as the same bytes", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const run = (args: string[]) => runCli(args, { cwd: dir, env });
    assert.equal((await run(["init"])).code, 0);
    const sdd = path.join(dir, ".sdd");
    writeFileSync(path.join(sdd, "docs", "r\u00e9sum\u00e9.md"), "NFC");
    writeFileSync(path.join(sdd, "memory", "cafe\u0301.md"), "NFD");
    writeFileSync(path.join(sdd, "memory", "\ufffd.md"), "a real U+FFFD");
    const r = await run(["dr", "backup", "--to", "bk.tar.gz"]);
    assert.equal(r.code, 0, r.stderr);
    const target = path.join(dir, "restored", ".sdd");
    const back = await run(["dr", "restore", "--from", "bk.tar.gz", "--sdd", target]);
    assert.equal(back.code, 0, back.stderr);
    for (const sub of ["docs", "memory"])
      assert.deepEqual(namesOf(path.join(target, sub)), namesOf(path.join(sdd, sub)), sub);
  } finally {
    await cleanup();
  }
});

test("a Python tarfile archive with non-ASCII names (the reference's, plus NFC and NFD ones) still restores", async (t) => {
  try {
    execFileSync("python3", ["-c", "import tarfile"], { stdio: "ignore" });
  } catch {
    t.skip("python3 not installed");
    return;
  }
  const { dir, cleanup } = await scratchDir();
  try {
    const from = path.join(dir, "py.tar.gz");
    // The reference's own archive, its members copied over, two more names appended.
    execFileSync("python3", [
      "-c",
      `import io, sys, tarfile
src, dst = sys.argv[1:3]
with tarfile.open(src, "r:gz") as a, tarfile.open(dst, "w:gz") as b:
    for m in a.getmembers():
        b.addfile(m, a.extractfile(m) if m.isfile() else None)
    for name, data in (("docs/r\\u00e9sum\\u00e9.md", b"NFC"), ("decisions/cafe\\u0301.md", b"NFD")):
        m = tarfile.TarInfo(name); m.size = len(data); b.addfile(m, io.BytesIO(data))`,
      path.join(PYTHON_REFERENCE, pythonReferenceFacts().backups.plain.file),
      from,
    ]);
    const target = path.join(dir, "restored", ".sdd");
    const r = await runCli(["dr", "restore", "--from", from, "--sdd", target], { env: envFor(dir) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(path.join(target, "docs", "r\u00e9sum\u00e9.md"), "utf8"), "NFC");
    assert.equal(await readFile(path.join(target, "decisions", "cafe\u0301.md"), "utf8"), "NFD");
    assert.ok(namesOf(path.join(target, "decisions")).includes(Buffer.from("cafe\u0301.md").toString("hex")));
  } finally {
    await cleanup();
  }
});

test("a Python tarfile archive with names that are not UTF-8 (PAX, GNU, ustar) restores their exact bytes", async (t) => {
  try {
    execFileSync("python3", ["-c", "import tarfile"], { stdio: "ignore" });
  } catch {
    t.skip("python3 not installed");
    return;
  }
  const { dir, cleanup } = await scratchDir();
  try {
    const latin1 = (s: string): Buffer => Buffer.from(s, "latin1");
    // A folder and files named in Latin-1; a long name (a GNU long-name record, a ustar prefix).
    const deep = `docs/${"\xe9".repeat(60)}/${"\xe8".repeat(60)}.md`;
    const made: [Buffer, string][] = [
      [latin1("docs/r\xe9sum\xe9.md"), "latin-1"],
      [latin1("docs/caf\xe9/x\xff.md"), "inside"],
      [latin1(deep), "deep"],
    ];
    for (const format of ["PAX_FORMAT", "GNU_FORMAT", "USTAR_FORMAT"]) {
      const from = path.join(dir, `${format}.tar.gz`);
      // The reference's own archive, its members copied over; then the names as os.fsencode
      // gives them to Python (surrogateescape), which tarfile archives as their raw bytes.
      execFileSync("python3", [
        "-c",
        `import io, os, sys, tarfile
src, dst, fmt = sys.argv[1:4]
with tarfile.open(src, "r:gz") as a, tarfile.open(dst, "w:gz", format=getattr(tarfile, fmt)) as b:
    for m in a.getmembers():
        b.addfile(m, a.extractfile(m) if m.isfile() else None)
    d = tarfile.TarInfo(os.fsdecode(b"docs/caf\\xe9")); d.type = tarfile.DIRTYPE; d.mode = 0o755; b.addfile(d)
    for name, data in zip(sys.argv[4::2], sys.argv[5::2]):
        m = tarfile.TarInfo(os.fsdecode(bytes.fromhex(name))); m.size = len(data); b.addfile(m, io.BytesIO(data.encode()))`,
        path.join(PYTHON_REFERENCE, pythonReferenceFacts().backups.plain.file),
        from,
        format,
        ...made.flatMap(([name, data]) => [name.toString("hex"), data]),
      ]);
      const target = path.join(dir, format, ".sdd");
      const r = await runCli(["dr", "restore", "--from", from, "--sdd", target], { env: envFor(dir) });
      assert.equal(r.code, 0, r.stderr);
      const docs = path.join(target, "docs");
      assert.deepEqual(
        namesOf(docs).filter((n) => n.includes("e9")),
        [latin1("\xe9".repeat(60)), latin1("caf\xe9"), latin1("r\xe9sum\xe9.md")]
          .map((b) => b.toString("hex"))
          .sort(),
        format,
      );
      assert.deepEqual(namesOf(latin1(docs + "/caf\xe9")), [latin1("x\xff.md").toString("hex")]);
      for (const [name, data] of made)
        assert.equal(readFileSync(Buffer.concat([latin1(target + "/"), name]), "utf8"), data, format);
    }
  } finally {
    await cleanup();
  }
});
