/** Damaged copies of an archive's bytes, made the way transit or disks damage them. */

/** A copy of `bytes` with one bit of the byte at `at` flipped. */
export function flip(bytes: Buffer, at: number): Buffer {
  const out = Buffer.from(bytes);
  out[at] = out[at]! ^ 0x04;
  return out;
}

/** The damage every `.age` reader must refuse as exit 5: altered header MAC, chunks, truncations. */
export function ageDamageCases(good: Buffer): [string, Buffer][] {
  const headerEnd = good.indexOf("\n--- ") + 1;
  return [
    ["header MAC altered", flip(good, headerEnd + 6)],
    ["first payload chunk altered", flip(good, good.indexOf("\n", headerEnd) + 1 + 16 + 100)],
    ["a middle payload chunk altered", flip(good, Math.floor((headerEnd + good.length) / 2))],
    ["last byte altered", flip(good, good.length - 1)],
    ["truncated in the payload", good.subarray(0, good.length - 100)],
    ["truncated in the header", good.subarray(0, headerEnd - 10)],
  ];
}
