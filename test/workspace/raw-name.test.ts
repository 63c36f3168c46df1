/**
 * The one mapping between a name's bytes and a string (src/workspace/raw-name.ts) is Python's
 * surrogateescape, which the Python reference uses for names (`os.fsdecode`, tarfile): checked
 * against python3 itself on seeded random bytes, and back to the same bytes.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { nameFromBytes, nameToBytes } from "../../src/workspace/raw-name.js";
import { prng } from "../helpers.js";

test("bytes to a name as Python's surrogateescape decodes them, and back to the same bytes", (t) => {
  try {
    execFileSync("python3", ["-c", "pass"], { stdio: "ignore" });
  } catch {
    t.skip("python3 not installed");
    return;
  }
  const rand = prng(52);
  // Valid UTF-8 of every length, cut sequences, overlong forms, encoded surrogates, bytes past
  // U+10FFFF, and random bytes around them.
  const pieces = [
    "r\u00e9sum\u00e9",
    "\u20ac",
    "\u{1f680}",
    "\ufffd",
    "e9",
    "c3",
    "e282",
    "f09f98",
    "c0af",
    "e080af",
    "eda080",
    "edbfbf",
    "f4908080",
    "f8",
    "ff",
    "80",
  ].map((p) => (/^[0-9a-f]+$/.test(p) ? Buffer.from(p, "hex") : Buffer.from(p)));
  const cases: Buffer[] = [...pieces];
  for (let i = 0; i < 400; i++) {
    const parts: Buffer[] = [];
    for (let n = 1 + Math.floor(rand() * 5); n > 0; n--) {
      if (rand() < 0.5) parts.push(pieces[Math.floor(rand() * pieces.length)]!);
      else parts.push(Buffer.from([Math.floor(rand() * 256)]));
    }
    cases.push(Buffer.concat(parts));
  }
  const python = execFileSync(
    "python3",
    [
      "-c",
      `import json, sys
for line in sys.stdin:
    s = bytes.fromhex(line.strip()).decode("utf-8", "surrogateescape")
    print(json.dumps([ord(c) for c in s]))`,
    ],
    { input: cases.map((c) => c.toString("hex")).join("\n") + "\n" },
  )
    .toString()
    .trimEnd()
    .split("\n");
  cases.forEach((bytes, i) => {
    const name = nameFromBytes(bytes);
    const points = Array.from(name, (c) => c.codePointAt(0));
    assert.deepEqual(points, JSON.parse(python[i]!), bytes.toString("hex"));
    assert.ok(nameToBytes(name).equals(bytes), bytes.toString("hex"));
  });
});
