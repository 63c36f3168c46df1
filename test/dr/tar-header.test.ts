import assert from "node:assert/strict";
import { test } from "node:test";
import { Header } from "tar/header";
import { encodeHeader, nodeTarHeader, type HeaderFields } from "../../src/dr/tar-header.js";
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
