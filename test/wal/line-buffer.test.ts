import assert from "node:assert/strict";
import { test } from "node:test";
import { KEPT_CAPACITY, LineBuffer } from "../../src/wal/line-buffer.js";

test("line buffer: lines added past its capacity keep the bytes before them", () => {
  const out = new LineBuffer(8);
  const added: string[] = [];
  for (let i = 0; i < 50; i++) {
    const line = `{"seq":${i},"note":"${"x".repeat(i)}"}\n`;
    out.add(line);
    added.push(line);
  }
  assert.ok(out.capacity > 8, "it grew");
  assert.deepEqual(out.bytes(), Buffer.from(added.join(""), "utf8"));
});

test("line buffer: text beyond ASCII is written as UTF-8, surrogate pairs included", () => {
  // Each of these can need more bytes than characters; the buffer starts too small for any.
  const texts = ["caf\u00e9\n", "\u{1F680} \u{1F680}\n", "\u20ac\u20ac\u20ac\n", "\u00e9".repeat(40) + "\n"];
  const out = new LineBuffer(4);
  for (const t of texts) out.add(t);
  assert.deepEqual(out.bytes(), Buffer.from(texts.join(""), "utf8"));
});

test("line buffer: reset empties it; a buffer grown past the kept size is given up", () => {
  const out = new LineBuffer(16);
  out.add("first group\n");
  out.reset();
  out.add("second\n");
  assert.equal(out.bytes().toString("utf8"), "second\n");

  out.reset();
  out.add("y".repeat(1000));
  const grown = out.capacity;
  out.reset();
  assert.equal(out.capacity, grown, "a moderate size is kept for the next group");
  assert.equal(out.bytes().length, 0);

  out.add("z".repeat(KEPT_CAPACITY + 1));
  assert.ok(out.capacity > KEPT_CAPACITY);
  out.reset();
  assert.equal(out.capacity, 16, "one huge group does not pin its memory");
  out.add("after\n");
  assert.equal(out.bytes().toString("utf8"), "after\n");
});
