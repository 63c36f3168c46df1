/**
 * The packing pass reads each file again and checks it against what the hashing pass recorded:
 * a file that changed, shrank or vanished in between fails with FileChangedError (the backup then
 * tries again), whether it is copied within the current 1 MiB batch (most files) or across batches
 * (a large one). Otherwise the tar stream holds each file's bytes, byte for byte. A file the
 * hashing pass left open is read through that descriptor: rewritten or shrunk it fails the same
 * way; removed or replaced by a rename since, it is archived as it was hashed. Every descriptor is
 * closed when the packing pass ends, whether it succeeds or fails.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { hashPass } from "../../src/dr/hash-pass.js";
import { FileChangedError, writeTar, type PackFile } from "../../src/dr/pack.js";
import { scratchDir } from "../helpers.js";

/** A sink that keeps what it is given. */
function collector(): { sink: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Files of `sizes` bytes in `dir`, each as the hashing pass would have recorded it. */
function planFiles(dir: string, sizes: number[]): { files: PackFile[]; contents: Buffer[] } {
  const contents = sizes.map((n, i) => Buffer.alloc(n, String.fromCharCode(97 + (i % 26))));
  const files = contents.map((data, i) => {
    const abs = path.join(dir, `f${i}`);
    writeFileSync(abs, data);
    return {
      rel: `f${i}`,
      abs,
      length: data.length,
      mode: 0o644,
      mtimeMs: 1_764_000_000_000,
      sha256: sha256(data),
    };
  });
  return { files, contents };
}

test("files are packed byte for byte, small ones within a batch and large ones across batches", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { files, contents } = planFiles(dir, [0, 1, 511, 512, 5000, 3 * 1024 * 1024 + 7, 100]);
    const { sink, bytes } = collector();
    await writeTar(sink, Buffer.from("{}"), [], files);
    const tar = bytes();
    let off = 1024; // the manifest's header and its one block
    for (const [i, data] of contents.entries()) {
      assert.equal(
        tar
          .subarray(off, off + 100)
          .toString("latin1")
          .replace(/\0+$/, ""),
        `f${i}`,
      );
      off += 512;
      assert.ok(tar.subarray(off, off + data.length).equals(data), `f${i}`);
      off += Math.ceil(data.length / 512) * 512;
    }
    assert.equal(tar.length, off + 1024);
  } finally {
    await cleanup();
  }
});

for (const size of [5000, 3 * 1024 * 1024]) {
  test(`a ${size}-byte file rewritten, shrunk or removed since it was hashed fails with FileChangedError`, async () => {
    const { dir, cleanup } = await scratchDir();
    try {
      const change = {
        rewritten: (f: PackFile) => writeFileSync(f.abs!, Buffer.alloc(f.length, "z")),
        shrunk: (f: PackFile) => writeFileSync(f.abs!, Buffer.alloc(f.length - 1, "a")),
        removed: (f: PackFile) => rmSync(f.abs!),
      };
      for (const [how, apply] of Object.entries(change)) {
        const { files } = planFiles(dir, [10, size]);
        apply(files[1]!);
        const { sink } = collector();
        await assert.rejects(
          writeTar(sink, Buffer.from("{}"), [], files),
          (err: Error) => err instanceof FileChangedError && err.message.startsWith("f1 changed"),
          how,
        );
      }
    } finally {
      await cleanup();
    }
  });
}

/** How many descriptors this process has open. */
const openDescriptors = (): number => readdirSync("/proc/self/fd").length;

/** Entry `i`'s bytes in a tar stream of files of these sizes (manifest "{}" first). */
function entryBytes(tar: Buffer, sizes: number[], i: number): Buffer {
  let off = 1024;
  for (let k = 0; k < i; k++) off += 512 + Math.ceil(sizes[k]! / 512) * 512;
  return tar.subarray(off + 512, off + 512 + sizes[i]!);
}

test("files left open by the hashing pass are read through their descriptors, all closed at the end", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sizes = [10, 5000, 3 * 1024 * 1024];
    const before = openDescriptors();
    // Whether a change fails the packing pass when the file is read through the descriptor kept
    // open (f1) and when it is opened again (f2): changed in place, the new bytes fail either way;
    // removed or replaced, a kept descriptor still reads what was hashed.
    const replace = (f: PackFile): void => {
      writeFileSync(`${f.abs!}.new`, Buffer.alloc(f.length, "z"));
      renameSync(`${f.abs!}.new`, f.abs!);
    };
    const plans: Record<
      string,
      { apply: (f: PackFile) => void; failsKept: boolean; failsReopened: boolean }
    > = {
      rewritten: {
        apply: (f) => writeFileSync(f.abs!, Buffer.alloc(f.length, "z")),
        failsKept: true,
        failsReopened: true,
      },
      shrunk: {
        apply: (f) => writeFileSync(f.abs!, Buffer.alloc(f.length - 1, "a")),
        failsKept: true,
        failsReopened: true,
      },
      removed: { apply: (f) => rmSync(f.abs!), failsKept: false, failsReopened: true },
      replaced: { apply: replace, failsKept: false, failsReopened: true },
      unchanged: { apply: () => {}, failsKept: false, failsReopened: false },
    };
    for (const [how, plan] of Object.entries(plans)) {
      for (const changed of [1, 2]) {
        const fails = changed === 1 ? plan.failsKept : plan.failsReopened;
        const { contents } = planFiles(dir, sizes);
        const listed = sizes.map((_, i) => ({ rel: `f${i}`, abs: path.join(dir, `f${i}`) }));
        const { planned } = await hashPass(listed, undefined, [], undefined, 2);
        assert.deepEqual(
          planned.map((p) => p.fd !== undefined),
          [true, true, false],
          "the first two stay open",
        );
        assert.equal(openDescriptors(), before + 2);
        plan.apply(planned[changed]!);
        const { sink, bytes } = collector();
        const packed = writeTar(sink, Buffer.from("{}"), [], planned);
        if (fails) {
          await assert.rejects(
            packed,
            (err: Error) => err instanceof FileChangedError && err.message.startsWith(`f${changed} changed`),
            `${how} f${changed}`,
          );
        } else {
          await packed;
          for (const [i, data] of contents.entries()) {
            assert.ok(entryBytes(bytes(), sizes, i).equals(data), `${how} f${changed}: f${i}`);
          }
        }
        assert.equal(openDescriptors(), before, `${how} f${changed}: descriptors closed`);
        assert.ok(planned.every((p) => p.fd === undefined));
      }
    }
  } finally {
    await cleanup();
  }
});
