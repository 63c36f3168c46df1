import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import {
  atomicWriteFile,
  durableAppend,
  durableCreate,
  durableMkdir,
  durableRename,
  durableRenameNoReplace,
  durableUnlink,
  fsyncDir,
  tempPathFor,
} from "../../src/workspace/durable.js";
import { scratchDir } from "../helpers.js";

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
