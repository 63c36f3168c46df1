import assert from "node:assert/strict";
import { test } from "node:test";
import { Header } from "tar/header";
import {
  decodeCommonHeader,
  encodeHeader,
  nodeTarHeader,
  type HeaderFields,
} from "../../src/dr/tar-header.js";
import { withSeed } from "../helpers.js";

function randomEntry(rand: () => number): HeaderFields {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_. /~!";
  const length = pick([1, 5, 20, 60, 98, 99, 100, 101, 150, 260]);
  let path = "";
  for (let i = 0; i < length; i++) path += alphabet[Math.floor(rand() * alphabet.length)];
  if (rand() < 0.1) path = "runtime/é-" + path;
  if (rand() < 0.05) path = "runtime/\u0001-" + path;
  return {
    path,
    type: rand() < 0.2 ? "Directory" : "File",
    size: pick([0, 1, 511, 512, 105_446, 2 ** 31, 0o77777777777, 0o77777777777 + 1, 2 ** 40]),
    mode: pick([0o644, 0o600, 0o755, 0o7777, 0o7777777]),
    mtimeMs: pick([0, 999, 1_764_000_000_123.5, 0o77777777777 * 1000, 0o77777777777 * 1000 + 1000]),
  };
}

test("tar headers are byte for byte node-tar's, for short, long, non-ASCII and huge entries", async () => {
  await withSeed("TAR_HEADER_SEED", async (rand) => {
    for (let i = 0; i < 5000; i++) {
      const h = randomEntry(rand);
      assert.deepEqual(await encodeHeader(h), await nodeTarHeader(h), JSON.stringify(h));
    }
  });
});

test("a header parses back to the entry it describes", async () => {
  const h: HeaderFields = {
    path: "backlog/open/T-1.md",
    type: "File",
    size: 1234,
    mode: 0o640,
    mtimeMs: 1_764_000_000_999,
  };
  const parsed = new Header(await encodeHeader(h));
  assert.equal(parsed.cksumValid, true);
  assert.equal(parsed.path, h.path);
  assert.equal(parsed.size, 1234);
  assert.equal(parsed.mode, 0o640);
  assert.equal(parsed.mtime?.getTime(), 1_764_000_000_000);
  assert.equal(parsed.type, "File");
});

/** node-tar's reading of `block`, in the fields the reader takes, or "throws". */
function nodeTarReading(block: Buffer) {
  try {
    const h = new Header(block, 0);
    return {
      path: h.path,
      type: h.type,
      size: h.size,
      mode: h.mode,
      mtime: h.mtime?.getTime(),
      cksumValid: h.cksumValid,
    };
  } catch {
    return "throws";
  }
}

/** Sets the checksum field of `block` to match its bytes, as GNU tar writes it (6 digits, NUL, space). */
function resum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, "0"), 148, "latin1");
  block[154] = 0;
}

test("the fast header decoder reads every block it takes as node-tar does, and takes the common ones", async () => {
  await withSeed("TAR_DECODE_SEED", async (rand) => {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    // Bytes that change how a field reads: terminators, digits, non-octal, base-256 marks, a
    // slash, a newline, non-ASCII.
    const palette = [0, 0x20, 0x30, 0x37, 0x38, 0x39, 0x2f, 0x0a, 0x09, 0x41, 0x80, 0xff, 0xc3, 0x35, 0x78];
    let taken = 0;
    let commonTaken = 0;
    let common = 0;
    for (let i = 0; i < 20000; i++) {
      const entry = randomEntry(rand);
      const encoded = await encodeHeader(entry);
      const block = Buffer.from(encoded.subarray(encoded.length - 512));
      const pristine = i % 4 === 0;
      if (!pristine) {
        if (rand() < 0.2) block.write("ustar  \0", 257, "latin1"); // GNU's magic
        const changes = 1 + Math.floor(rand() * 3);
        for (let k = 0; k < changes; k++) {
          const at =
            rand() < 0.8
              ? pick([
                  0, 1, 98, 99, 100, 101, 106, 107, 108, 124, 134, 135, 136, 148, 153, 154, 155, 156, 257,
                  263, 329, 345, 475, 476, 488,
                ])
              : Math.floor(rand() * 512);
          block[at] = rand() < 0.9 ? pick(palette) : Math.floor(rand() * 256);
        }
        if (rand() < 0.6) resum(block);
      }
      const fast = decodeCommonHeader(block);
      const ref = nodeTarReading(block);
      // One block, no ustar prefix (a name of 100 bytes or more is split into one), ASCII, and
      // not a file named like a folder (node-tar reads that as a folder).
      const isCommon =
        pristine &&
        encoded.length === 512 &&
        encoded[345] === 0 &&
        /^[\x20-\x7e]*$/.test(entry.path) &&
        !(entry.type === "File" && entry.path.endsWith("/"));
      if (isCommon) common++;
      if (!fast) {
        assert.ok(!isCommon, `a common header was declined: ${JSON.stringify(entry)}`);
        continue;
      }
      taken++;
      if (isCommon) commonTaken++;
      assert.notEqual(ref, "throws", `node-tar rejects a block the fast path took: ${block.toString("hex")}`);
      assert.deepEqual({ ...fast, mtime: fast.mtime?.getTime() }, ref, `block ${block.toString("hex")}`);
    }
    assert.ok(common > 1000 && commonTaken === common, `${commonTaken} of ${common} common headers taken`);
    assert.ok(taken > commonTaken, "no altered block was taken: the comparison saw only pristine ones");
  });
});
