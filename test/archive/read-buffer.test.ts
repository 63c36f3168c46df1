/**
 * Shipping cycles read every stream into one reused buffer, so a plain segment's bytes are a view
 * of memory the next read overwrites. A put that failed is sent again in a later cycle under the
 * same name, after other streams were read: it must still send the bytes it was made of.
 */
import assert from "node:assert/strict";
import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { readObject } from "../../src/archive/catalog.js";
import { shipCycle, type UnsettledPut } from "../../src/archive/shipper.js";
import { ReadBuffer, type StreamEnd } from "../../src/archive/streams.js";
import { parseSegmentKey } from "../../src/archive/names.js";
import type { BackupStore, PutOptions } from "../../src/storage/store.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

const line = (stream: string, i: number): string =>
  JSON.stringify({ timestamp: 1795744701 + i, stream, n: i, pad: "x".repeat(200 + i) }) + "\n";

test("a failed plain segment sent again after other reads of the reused buffer stores its own bytes", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-archive-read-buffer-");
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    // Two run records, shipped in this order (streams are sorted): a, then b.
    const a = ws.p("runs/a.jsonl");
    const b = ws.p("runs/b.jsonl");
    for (let i = 0; i < 20; i++) await appendFile(a, line("a", i));
    for (let i = 0; i < 20; i++) await appendFile(b, line("b", i));

    const folder = await openCatalogue(path.join(dir, "archive"));
    let failB = true;
    const sent = new Map<string, Buffer>();
    // The real folder store; b's first put fails after the store has read its body.
    const store: BackupStore = {
      root: folder.root,
      describe: (k) => folder.describe(k),
      get: (k, r) => folder.get(k, r),
      head: (k) => folder.head(k),
      list: (p) => folder.list(p),
      delete: (k) => folder.delete(k),
      async put(key: string, source: Readable, options?: PutOptions) {
        const body = Buffer.concat(await source.toArray());
        sent.set(key, body);
        if (failB && parseSegmentKey(key)?.stream === "runs/b.jsonl") {
          failB = false;
          throw new Error("the store failed");
        }
        return folder.put(key, Readable.from([body]), options);
      },
    };
    const ends = new Map<string, StreamEnd>();
    const unsettled = new Map<string, UnsettledPut>();
    const target = {
      store,
      ws,
      generation: "g20261205T120000000Z-0b0f",
      ends,
      unsettled,
      readBuffer: new ReadBuffer(),
      // Uncompressed: a plain segment's bytes are a view of the read buffer (what this checks).
      codec: { encrypted: false },
    };

    await assert.rejects(shipCycle(target), /the store failed/);
    assert.equal(unsettled.size, 1, "b's put is kept for the next cycle");
    const bKey = [...unsettled.values()][0]!.key;

    // a grows: the next cycle reads its new lines into the buffer before b's put is sent again.
    for (let i = 20; i < 40; i++) await appendFile(a, line("a", i));
    const second = await shipCycle(target);
    assert.equal(second.segments, 2);
    assert.equal(unsettled.size, 0);
    const whole = await readFile(b);
    assert.ok(sent.get(bKey)!.equals(whole), "the retried put sent b's bytes");
    assert.ok((await readObject(folder, bKey)).equals(whole), "the store holds b's bytes");
  } finally {
    await cleanup();
  }
});
