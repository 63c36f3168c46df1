import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { open, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  atomicWriteFile,
  durableAppend,
  durableAppendLines,
  durableCopy,
  durableCreate,
  durableMkdir,
  durableRename,
  durableRenameNoReplace,
  durableTruncate,
  durableUnlink,
  fsyncDir,
  fsyncFile,
  fsyncHandle,
  tempPathFor,
  writeAndDatasyncFd,
} from "../../src/workspace/durable.js";
import { REPO_ROOT, scratchDir } from "../helpers.js";

test("atomicWriteFile replaces the content and leaves no temp file", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "state.json");
    await atomicWriteFile(f, "old\n");
    await atomicWriteFile(f, "new\n", { mode: 0o600 });
    assert.equal(await readFile(f, "utf8"), "new\n");
    assert.equal((await stat(f)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ["state.json"]);
  } finally {
    await cleanup();
  }
});

test("atomicWriteFile into a missing folder fails and leaves nothing behind", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await assert.rejects(atomicWriteFile(path.join(dir, "nope", "x.json"), "x"), { code: "ENOENT" });
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await cleanup();
  }
});

test("atomicWriteFile over a folder fails and keeps the folder", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const target = path.join(dir, "sub");
    await durableMkdir(target);
    await assert.rejects(atomicWriteFile(target, "x"));
    assert.ok((await stat(target)).isDirectory());
    assert.deepEqual(await readdir(dir), ["sub"]);
  } finally {
    await cleanup();
  }
});

test("durableAppend creates the file then appends whole records", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "log.jsonl");
    await durableAppend(f, '{"a":1}\n');
    await durableAppend(f, Buffer.from('{"a":2}\n'));
    assert.equal(await readFile(f, "utf8"), '{"a":1}\n{"a":2}\n');
  } finally {
    await cleanup();
  }
});

test("durableAppendLines puts a record after a torn line on a line of its own", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "log.jsonl");
    await durableAppendLines(f, '{"a":1}\n');
    await durableAppendLines(f, '{"a":2}\n');
    assert.equal(await readFile(f, "utf8"), '{"a":1}\n{"a":2}\n');
    await durableAppend(f, '{"a":3,"to'); // a crash between the write and its newline
    await durableAppendLines(f, '{"a":4}\n');
    assert.equal(await readFile(f, "utf8"), '{"a":1}\n{"a":2}\n{"a":3,"to\n{"a":4}\n');
  } finally {
    await cleanup();
  }
});

test("durableCreate refuses to overwrite an existing file", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "once");
    await durableCreate(f, "first", 0o600);
    await assert.rejects(durableCreate(f, "second"), { code: "EEXIST" });
    assert.equal(await readFile(f, "utf8"), "first");
    assert.equal((await stat(f)).mode & 0o777, 0o600);
  } finally {
    await cleanup();
  }
});

test("durableCreate never shows a reader the file partly written, and leaves no temp file", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "lock");
    const body = "x".repeat(16 << 20);
    let created = false;
    const creating = durableCreate(f, body).then(() => (created = true));
    let seen = 0;
    while (!created) {
      const text = await readFile(f, "utf8").catch(() => undefined);
      if (text !== undefined) {
        seen++;
        assert.equal(text.length, body.length, "a reader saw the file before it was whole");
      }
    }
    await creating;
    assert.equal(await readFile(f, "utf8"), body);
    assert.deepEqual(await readdir(dir), ["lock"], `seen whole ${seen} time(s) while creating`);
  } finally {
    await cleanup();
  }
});

test("durableMkdir creates nested folders and is idempotent", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const deep = path.join(dir, "a", "b", "c");
    await durableMkdir(deep);
    await durableMkdir(deep);
    assert.ok((await stat(deep)).isDirectory());
  } finally {
    await cleanup();
  }
});

test("durableMkdir fails with the kernel's error where a file is in the way", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await writeFile(path.join(dir, "f"), "x");
    await assert.rejects(durableMkdir(path.join(dir, "f")), { code: "EEXIST" });
    await assert.rejects(durableMkdir(path.join(dir, "f", "a", "b")), { code: "ENOTDIR" });
    assert.deepEqual(await readdir(dir), ["f"]);
  } finally {
    await cleanup();
  }
});

test(
  "durableMkdir where the file system refuses new folders (/proc) fails at once with ENOENT",
  { skip: !existsSync("/proc/self") && "no /proc here", timeout: 60_000 },
  async () => {
    // Node's recursive mkdir retries this forever at full CPU (the timeout only ends a hung run).
    await assert.rejects(durableMkdir("/proc/no-such-folder/a/b"), { code: "ENOENT" });
  },
);

test("durableRenameNoReplace moves into a free name and refuses a taken one, leaving both files", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const [a, b, c] = ["a", "b", "c"].map((n) => path.join(dir, n));
    await writeFile(a, "new");
    await writeFile(b, "old");
    await assert.rejects(durableRenameNoReplace(a, b), { code: "EEXIST" });
    assert.equal(await readFile(b, "utf8"), "old");
    assert.equal(await readFile(a, "utf8"), "new");
    await durableRenameNoReplace(a, c);
    assert.deepEqual((await readdir(dir)).sort(), ["b", "c"]);
    assert.equal(await readFile(c, "utf8"), "new");
  } finally {
    await cleanup();
  }
});

test("durableRename across folders and durableUnlink", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await durableMkdir(path.join(dir, "a"));
    await durableMkdir(path.join(dir, "b"));
    await writeFile(path.join(dir, "a", "f"), "x");
    await durableRename(path.join(dir, "a", "f"), path.join(dir, "b", "g"));
    assert.deepEqual(await readdir(path.join(dir, "a")), []);
    assert.equal(await readFile(path.join(dir, "b", "g"), "utf8"), "x");
    await durableUnlink(path.join(dir, "b", "g"));
    assert.deepEqual(await readdir(path.join(dir, "b")), []);
    await assert.rejects(durableUnlink(path.join(dir, "b", "g")), { code: "ENOENT" });
  } finally {
    await cleanup();
  }
});

test("fsyncDir on a file or a missing path fails", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    await writeFile(path.join(dir, "f"), "x");
    await fsyncDir(dir);
    await assert.rejects(fsyncDir(path.join(dir, "f")), { code: "ENOTDIR" });
    await assert.rejects(fsyncDir(path.join(dir, "missing")), { code: "ENOENT" });
  } finally {
    await cleanup();
  }
});

test("tempPathFor stays in the target's folder and is hidden", () => {
  const t = tempPathFor("/x/y/state.json");
  assert.equal(path.dirname(t), "/x/y");
  assert.match(path.basename(t), /^\.state\.json\.tmp-\d+-[0-9a-f]{8}$/);
});

test("durableTruncate cuts an open file; durableCopy replaces a file whole; fsyncFile and fsyncHandle sync", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const f = path.join(dir, "wal.jsonl");
    await writeFile(f, "line 1\nline 2\ntorn");
    const fh = await open(f, "r+");
    try {
      await durableTruncate(fh, 14);
      writeAndDatasyncFd(fh.fd, Buffer.from("line 3\n"));
      await fsyncHandle(fh);
    } finally {
      await fh.close();
    }
    // The fd was opened without O_APPEND: the write lands at its own position, after the cut.
    assert.equal(await readFile(f, "utf8"), "line 3\nline 2\n");
    await fsyncFile(f);
    const copy = path.join(dir, "copy.jsonl");
    await writeFile(copy, "old, longer content\n");
    await durableCopy(f, copy);
    assert.equal(await readFile(copy, "utf8"), "line 3\nline 2\n");
    assert.deepEqual((await readdir(dir)).sort(), ["copy.jsonl", "wal.jsonl"]);
    await assert.rejects(fsyncFile(path.join(dir, "missing")), { code: "ENOENT" });
  } finally {
    await cleanup();
  }
});

// docs/ARCHITECTURE.md, invariant 1: every fsync, and every truncate of state, goes through
// src/workspace/durable.ts, so the durability rules live (and are reviewed) in one place.
test("no module but src/workspace/durable.ts syncs or truncates a file itself", async () => {
  // A call, not a word in a comment; `sync -f` (syncfs) run as a command, or in a shell's script, counts too.
  const direct =
    /\.(sync|datasync|truncate)\(|\b(fsyncSync|fdatasyncSync|ftruncate|ftruncateSync|truncateSync|fsync|fdatasync)\(|"sync"|\bsync -f\b/;
  const offenders: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith(".ts") && p !== path.join(REPO_ROOT, "src", "workspace", "durable.ts")) {
        (await readFile(p, "utf8")).split("\n").forEach((line, i) => {
          const code = line.trim();
          const comment = code.startsWith("*") || code.startsWith("/*") || code.startsWith("//");
          if (!comment && direct.test(line))
            offenders.push(`${path.relative(REPO_ROOT, p)}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  await walk(path.join(REPO_ROOT, "src"));
  assert.deepEqual(offenders, []);
});

test("FileSystemSync: flushes answer in order; the process ends once none is owed; without sh, false", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-fs-sync-");
  try {
    const durable = path.join(REPO_ROOT, "dist", "src", "workspace", "durable.js");
    // Three flushes, nothing else keeping the process alive: each is answered before it exits,
    // and it exits (the idle shell does not hold it) without a close().
    const script =
      `const { FileSystemSync } = await import(${JSON.stringify(durable)});` +
      `const s = await FileSystemSync.start(${JSON.stringify(dir)});` +
      `const answers = [];` +
      `for (let i = 0; i < 3; i++) s.flush().then((ok) => { answers.push(ok); console.log(answers.join(",")); });`;
    const run = (PATH: string) =>
      spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        encoding: "utf8",
        timeout: 30_000,
        env: { ...process.env, PATH },
      });
    const ok = run(process.env.PATH ?? "");
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, "true\ntrue,true\ntrue,true,true\n");
    // No shell to run: every flush answers false (the staging writer then fsyncs each file).
    const none = run(dir);
    assert.equal(none.status, 0, none.stderr);
    assert.equal(none.stdout, "false\nfalse,false\nfalse,false,false\n");
  } finally {
    await cleanup();
  }
});
