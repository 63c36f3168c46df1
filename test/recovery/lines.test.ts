import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { readLinesBackward, readLinesForward } from "../../src/workspace/lines.js";
import { prng, scratchDir } from "../helpers.js";

/** What the readers must agree with: split on "\n", the final empty segment is not a line. */
function expectedLines(text: string) {
  if (text === "") return [];
  const parts = text.split("\n");
  const terminated = text.endsWith("\n");
  if (terminated) parts.pop();
  let offset = 0;
  return parts.map((t, i) => {
    const line = { text: t, offset, terminated: terminated || i < parts.length - 1 };
    offset += Buffer.byteLength(t) + 1;
    return line;
  });
}

test("forward and backward line readers agree with split on random files and tiny chunks", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const r = prng(5);
    const alphabet = ["a", "b", "\n", "\n", "\u00e9", "\u{1F680}", "{", "}"];
    const file = path.join(dir, "f");
    for (let round = 0; round < 300; round++) {
      let text = "";
      const len = Math.floor(r() * 60);
      for (let i = 0; i < len; i++) text += alphabet[Math.floor(r() * alphabet.length)];
      await writeFile(file, text);
      const want = expectedLines(text);
      const chunk = 1 + Math.floor(r() * 7);
      const fwd = [];
      for await (const l of readLinesForward(file, 0, chunk)) fwd.push(l);
      assert.deepEqual(
        fwd.map((l) => ({ text: l.text, offset: l.offset, terminated: l.terminated })),
        want,
        JSON.stringify(text),
      );
      assert.deepEqual(
        fwd.map((l) => l.lineNo),
        want.map((_l, i) => i + 1),
      );
      const back = [];
      for await (const l of readLinesBackward(file, chunk)) back.push(l);
      assert.deepEqual(
        back.reverse().map((l) => ({ text: l.text, offset: l.offset, terminated: l.terminated })),
        want,
        JSON.stringify(text),
      );
      for (const l of back) {
        assert.equal(l.end, l.offset + Buffer.byteLength(l.text) + (l.terminated ? 1 : 0));
      }
      // Resuming forward from any line's offset yields the rest.
      if (want.length > 1) {
        const k = Math.floor(r() * want.length);
        const rest = [];
        for await (const l of readLinesForward(file, want[k].offset, chunk)) rest.push(l.text);
        assert.deepEqual(
          rest,
          want.slice(k).map((l) => l.text),
        );
      }
    }
  } finally {
    await cleanup();
  }
});
