/**
 * What a shipping cycle reads of a stream (readDurable): the bytes it may ship and the facts its
 * segment index records, checked against a line-by-line reading of the same file.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  emptyEnd,
  lineTime,
  readDurable,
  type DurableChunk,
  type StreamEnd,
} from "../../src/archive/streams.js";
import { GENESIS_HASH, checkLine, entryTimeMs } from "../../src/wal/entry.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";
import { appendDecisions } from "./support/archive-workspace.js";

const RUN = "run-chunk";
const WAL_STREAM = `runtime/wal/${RUN}.wal.jsonl`;
const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

/** The lines of a file, each with its newline. */
const linesOf = async (file: string): Promise<string[]> =>
  (await readFile(file, "utf8")).split(/(?<=\n)/).filter((l) => l.length > 0);

/** Where the archive ends after the first `n` entries of `lines`. */
function walEndAfter(lines: string[], n: number): StreamEnd {
  if (n === 0) return emptyEnd(WAL_STREAM);
  const last = checkLine(lines[n - 1]!.slice(0, -1));
  assert.ok(last.ok);
  return {
    length: Buffer.byteLength(lines.slice(0, n).join("")),
    tail_sha256: sha256(lines[n - 1]!),
    seq: last.entry.seq,
    entry_hash: last.entry.entry_hash,
  };
}

const timeOf = (line: string): number => {
  const c = checkLine(line.slice(0, -1));
  assert.ok(c.ok);
  return entryTimeMs(c.entry.timestamp);
};

describe("archive: the durable bytes a cycle ships", () => {
  let scratch: Awaited<ReturnType<typeof scratchDir>>;
  let ws: Workspace;
  let lines: string[];

  before(async () => {
    scratch = await scratchDir("bernstein-archive-chunk-");
    ({ workspace: ws } = await initWorkspace(path.join(scratch.dir, ".sdd")));
    await appendDecisions(ws, RUN, 30);
    lines = await linesOf(ws.walFile(RUN));
    assert.equal(lines.length, 30);
  });
  after(async () => scratch.cleanup());

  it("a clean WAL ships whole after the archived end, with the first and last entry in its index", async () => {
    const from = walEndAfter(lines, 9);
    const chunk = await readDurable(ws.walFile(RUN), WAL_STREAM, from);
    assert.ok(chunk);
    assert.equal(chunk.bytes.toString("utf8"), lines.slice(9).join(""));
    assert.equal(chunk.from, from.length);
    assert.deepEqual(chunk.end, walEndAfter(lines, 30));
    assert.equal(chunk.firstSeq, 9);
    assert.equal(chunk.prevHash, from.entry_hash);
    assert.equal(chunk.firstTime, timeOf(lines[9]!));
    assert.equal(chunk.lastTime, timeOf(lines[29]!));
    assert.equal(chunk.pending, 0);
    assert.equal(chunk.more, false);
  });

  /** readDurable of `rows` from the run's start, in a file of its own. */
  async function chunkOf(name: string, rows: string[]) {
    const file = path.join(scratch.dir, `${name}.wal.jsonl`);
    await writeFile(file, rows.join(""));
    const chunk = await readDurable(file, WAL_STREAM, emptyEnd(WAL_STREAM));
    assert.ok(chunk);
    return chunk;
  }

  /** The chunk holds lines 0-14 only, as the archive's end after them; the rest is pending. */
  function cutBefore15(chunk: DurableChunk, rest: string[]): void {
    assert.equal(chunk.bytes.toString("utf8"), lines.slice(0, 15).join(""));
    assert.deepEqual(chunk.end, walEndAfter(lines, 15));
    assert.equal(chunk.firstSeq, 0);
    assert.equal(chunk.prevHash, GENESIS_HASH);
    assert.equal(chunk.firstTime, timeOf(lines[0]!));
    assert.equal(chunk.lastTime, timeOf(lines[14]!));
    assert.equal(chunk.pending, Buffer.byteLength(rest.join("")));
  }

  const breaks: [string, (line: string) => string][] = [
    ["a seq skipped", (l) => l.replace('{"seq":15,', '{"seq":16,')],
    [
      "a prev_hash that does not link",
      (l) => l.replace(/"prev_hash":"[0-9a-f]/, (m) => m.slice(0, -1) + (m.endsWith("0") ? "1" : "0")),
    ],
    ["a line cut short", (l) => l.slice(0, 40) + "\n"],
    ["a line no longer in the writers' form", (l) => l.replace('{"seq":15,', '{ "seq":15,')],
  ];
  for (const [what, damage] of breaks) {
    it(`an entry with ${what} stops the chunk just before it; what follows is pending`, async () => {
      const broken = damage(lines[15]!);
      assert.notEqual(broken, lines[15]);
      const rest = [broken, ...lines.slice(16)];
      cutBefore15(await chunkOf(what.replace(/\W+/g, "-"), [...lines.slice(0, 15), ...rest]), rest);
    });
  }

  it("an entry that does not verify at the chunk's end stops the chunk just before it", async () => {
    const altered = lines[15]!.replace('"T-15"', '"T-99"');
    assert.notEqual(altered, lines[15]);
    cutBefore15(await chunkOf("altered-last", [...lines.slice(0, 15), altered]), [altered]);
  });

  it("an entry altered inside its frame between the chunk's first and last ships: its hash is proven by restore and archive-list --check", async () => {
    const altered = lines[15]!.replace('"T-15"', '"T-99"');
    assert.notEqual(altered, lines[15]);
    const rows = [...lines.slice(0, 15), altered, ...lines.slice(16)];
    const chunk = await chunkOf("altered-inside", rows);
    assert.equal(chunk.bytes.toString("utf8"), rows.join(""));
    // The index's facts stay true: the first entry links to the genesis, the last one verifies.
    assert.deepEqual(chunk.end, walEndAfter(lines, 30));
    assert.equal(chunk.firstSeq, 0);
    assert.equal(chunk.prevHash, GENESIS_HASH);
    assert.equal(chunk.pending, 0);
  });

  it("entries that do not follow the archived end ship nothing", async () => {
    const from = { ...walEndAfter(lines, 9), entry_hash: "0".repeat(64) };
    const chunk = await readDurable(ws.walFile(RUN), WAL_STREAM, from);
    assert.ok(chunk);
    assert.equal(chunk.bytes.length, 0);
    assert.deepEqual(chunk.end, from);
    assert.equal(chunk.firstSeq, undefined);
  });

  it("a log ships every complete line; its times are those of the first and last lines that carry one", async () => {
    const file = path.join(scratch.dir, "runs-x.jsonl");
    const rows = [
      "\n",
      '{"note": "no time"}\n',
      '{"timestamp": 1700000000.5}\n',
      '{"created_at": "2026-01-02T03:04:05Z"}\n',
      '{"timestamp": 1700000100}\n',
      "not json\n",
    ];
    await writeFile(file, rows.join(""));
    await appendFile(file, '{"timestamp": 17'); // an incomplete line waits
    const chunk = await readDurable(file, "runs/x.jsonl", emptyEnd("runs/x.jsonl"));
    assert.ok(chunk);
    assert.equal(chunk.bytes.toString("utf8"), rows.join(""));
    assert.deepEqual(chunk.end, {
      length: Buffer.byteLength(rows.join("")),
      tail_sha256: sha256("not json\n"),
    });
    assert.equal(chunk.firstTime, lineTime(rows[2]!));
    assert.equal(chunk.firstTime, 1_700_000_000_500);
    assert.equal(chunk.lastTime, 1_700_000_100_000);
    assert.equal(chunk.pending, '{"timestamp": 17'.length);
    assert.equal(chunk.firstSeq, undefined);
  });
});
