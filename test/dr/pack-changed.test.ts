/**
 * The packing pass reads each file again and checks it against what the hashing pass recorded:
 * a file that changed, shrank or vanished in between fails with FileChangedError (the backup then
 * tries again), whether it is copied within the current 1 MiB batch (most files) or across batches
 * (a large one). Otherwise the tar stream holds each file's bytes, byte for byte.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
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
