/**
 * Segments are stored compressed (docs/formats.md "Segment encoding"): a new generation's record
 * says Brotli, every segment holds its lines compressed with their hash in its index, and a
 * restore, `--check` and compaction read them as they read plain ones. A generation an earlier
 * archiver started uncompressed or gzipped is continued in its own form and stays restorable
 * beside newer ones. A segment that would inflate beyond its name's byte range is refused without
 * inflating it all, whatever its compression; a compression this version does not know is named.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { Archiver } from "../../src/archive/archiver.js";
import type { GenerationRecord } from "../../src/archive/catalog.js";
import { parseArchiveKey } from "../../src/archive/names.js";
import {
  SEGMENT_COMPRESSIONS,
  SegmentInflateError,
  decodeSegment,
  encodeSegment,
  undecodableReason,
  type SegmentCompression,
} from "../../src/archive/segment-codec.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { runMain, scratchDir } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  rewriteSegment,
  segmentText,
  storeObjects,
  walSegments,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const RUN = "run-compressed";
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

async function records(store: string): Promise<GenerationRecord[]> {
  const names = [...(await storeObjects(store)).keys()].filter(
    (k) => parseArchiveKey(k)?.kind === "generation",
  );
  return Promise.all(
    names.map(async (n) => JSON.parse(await readFile(path.join(store, n), "utf8")) as GenerationRecord),
  );
}

async function meta(store: string, key: string): Promise<Record<string, string>> {
  return JSON.parse(await readFile(path.join(store, `.${key}.meta.json`), "utf8")) as Record<string, string>;
}

describe("decodeSegment", () => {
  it("names a segment that inflates beyond its length as such, in each compression, sealed or not, and a seal that fails as one", async () => {
    const plain = Buffer.from("\n".repeat(4 * 1024 * 1024));
    const as = { name: "gen-g20261205T000000000Z-0000.seg.x.0000000000000000-0000000000000010", timeMs: 0 };
    const forms = SEGMENT_COMPRESSIONS.flatMap((compression) =>
      [undefined, { scheme: "fernet" as const, key: randomBytes(32) }].map((key) => ({ compression, key })),
    );
    for (const { compression, key } of forms) {
      const codec = { compression, encrypted: key !== undefined, ...(key ? { key } : {}) };
      const stored = await encodeSegment(codec, [plain], as);
      assert.ok(stored.length < plain.length / 100);
      assert.ok((await decodeSegment(codec, stored, plain.length)).equals(plain));
      await assert.rejects(decodeSegment(codec, stored, 16), (err: unknown) => {
        assert.ok(err instanceof SegmentInflateError, String(err));
        assert.match(undecodableReason(err), /^altered or truncated: does not inflate/);
        return true;
      });
      if (!key) continue;
      const other = { ...codec, key: { scheme: "fernet" as const, key: randomBytes(32) } };
      await assert.rejects(decodeSegment(other, stored, plain.length), (err: unknown) => {
        assert.match(undecodableReason(err), /^altered: does not authenticate/);
        return true;
      });
    }
  });
});

describe("compressed segments", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    scratch = await scratchDir("bernstein-archive-compressed-");
  });
  after(async () => scratch.cleanup());

  /** A fixture and an archiver that starts generations in the form `compression` of an earlier version. */
  async function earlierArchiver(name: string, compression: SegmentCompression | null) {
    const fx = await archiveFixture(path.join(scratch.dir, name));
    const store = path.join(fx.dir, "store");
    await mkdir(store);
    const archiver = new Archiver({
      store: await openCatalogue(store),
      ws: fx.ws,
      intervalMs: 1000,
      snapshotIntervalMs: Number.MAX_SAFE_INTEGER,
      compression,
    });
    return { fx, store, archiver };
  }

  /**
   * The CLI's main() in this process (runMain), for the runs whose being a process another run of
   * the same command in this file already checks: what it prints and exits with are the same.
   */
  const inProcess = (fx: ArchiveFixture, args: string[], sdd = fx.sdd) =>
    runMain(["--sdd", sdd, ...args], { env: fx.env, cwd: fx.dir });

  /** `dr archive-restore --latest` into a new folder: a real CLI run unless `inProc`. */
  async function restoreLatest(fx: ArchiveFixture, store: string, name: string, inProc = false) {
    const sdd = path.join(scratch.dir, name, ".sdd");
    const args = ["--json", "dr", "archive-restore", "--from", store, "--latest"];
    const r = await (inProc ? inProcess(fx, args, sdd) : fx.cli(args, sdd));
    assert.equal(r.code, 0, r.stderr);
    return { sdd, out: JSON.parse(r.stdout) as { wal: Record<string, { seq: number }> } };
  }

  it("a new generation stores its lines Brotli-compressed, indexed by their sha256; restore, --check and compaction read them", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "new"));
    const store = path.join(fx.dir, "store");
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    let lastBytesTotal = 0;
    for (let b = 0; b < 4; b++) {
      await appendDecisions(fx.ws, RUN, 40, b * 40);
      // The last one a real CLI run: its --json report read as a process prints it.
      const args = ["--json", "dr", "archive", "--to", store, "--once"];
      const r = await (b === 3 ? fx.cli(args) : inProcess(fx, args));
      assert.equal(r.code, 0, r.stderr);
      lastBytesTotal = JSON.parse(r.stdout).bytes_total;
    }
    const [record] = await records(store);
    assert.equal(record!.compression, "br");
    const segs = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(segs.length, 4, segs.join("\n"));
    const wal = await readFile(fx.ws.walFile(RUN));
    let storedBytes = 0;
    for (const key of segs) {
      const name = parseArchiveKey(key)!;
      assert.ok(name.kind === "segment");
      const stored = await readFile(path.join(store, key));
      storedBytes += stored.length;
      const plain = await segmentText(store, key);
      assert.equal(plain, wal.subarray(name.from, name.to).toString("utf8"), `${key} holds its byte range`);
      assert.equal(brotliDecompressSync(stored).toString("utf8"), plain, `${key} is Brotli`);
      const ix = await meta(store, key);
      assert.equal(ix.sha256, sha256(stored));
      // The stored bytes' hash fixes the plaintext: none of it is kept beside.
      assert.equal(ix["plain-sha256"], undefined);
    }
    assert.ok(storedBytes * 3 < wal.length, `${storedBytes} bytes stored for ${wal.length} of WAL`);
    const newest = await readFile(path.join(store, segs[segs.length - 1]!));
    assert.equal(lastBytesTotal, newest.length, "bytes_total counts what the store was given");

    const { sdd, out } = await restoreLatest(fx, store, "restored");
    assert.equal(out.wal[RUN]!.seq, 159);
    assert.ok((await readFile(path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`))).equals(wal));
    const check = await fx.cli(["--json", "dr", "archive-list", "--from", store, "--check"]);
    assert.equal(check.code, 0, check.stdout + check.stderr);

    const compact = await fx.cli([
      "--json",
      "dr",
      "archive-compact",
      "--from",
      store,
      "--target-size",
      "1MiB",
    ]);
    assert.equal(compact.code, 0, compact.stderr);
    const merged = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(merged.length, 1, merged.join("\n"));
    assert.ok(brotliDecompressSync(await readFile(path.join(store, merged[0]!))).equals(wal));
    const again = await restoreLatest(fx, store, "restored-compacted", true);
    assert.ok((await readFile(path.join(again.sdd, "runtime", "wal", `${RUN}.wal.jsonl`))).equals(wal));
  });

  it("an uncompressed generation (an earlier archiver's) is continued uncompressed; a new one beside it is Brotli-compressed", async () => {
    const { fx, store, archiver: legacy } = await earlierArchiver("legacy", null);
    await appendDecisions(fx.ws, RUN, 10);
    assert.ok(await legacy.step(), legacy.health.snapshot().last_error ?? "");
    await appendDecisions(fx.ws, RUN, 10, 10);
    assert.ok(await legacy.step(), legacy.health.snapshot().last_error ?? "");
    await legacy.health.stopped();
    const [old] = await records(store);
    assert.equal(old!.compression, undefined);

    // Today's archiver resumes it as it is: its segments stay plain.
    await appendDecisions(fx.ws, RUN, 10, 20);
    const resumed = await fx.cli(["--json", "dr", "archive", "--to", store, "--once"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((await records(store)).length, 1, "the same generation");
    const plainSegs = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(plainSegs.length, 2, plainSegs.join("\n"));
    for (const key of plainSegs) {
      const stored = await readFile(path.join(store, key));
      assert.equal(stored[0], "{".charCodeAt(0), `${key} is plain`);
      assert.equal((await meta(store, key)).sha256, sha256(stored));
    }
    const before = await restoreLatest(fx, store, "legacy-restored", true);
    assert.equal(before.out.wal[RUN]!.seq, 29);

    // Restored in place and archived again: a new generation, compressed; the old one still restores.
    const back = await fx.cli(["dr", "archive-restore", "--from", store, "--at-seq", `${RUN}:19`]);
    assert.equal(back.code, 0, back.stderr);
    await appendDecisions(fx.ws, RUN, 5, 20);
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    await appendDecisions(fx.ws, RUN, 5, 25);
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    const gens = (await records(store)).sort((a, b) => a.generation.localeCompare(b.generation));
    assert.equal(gens.length, 2);
    assert.equal(gens[0]!.compression, undefined);
    assert.equal(gens[1]!.compression, "br");
    const newer = walSegments((await storeObjects(store)).keys(), RUN).filter((k) =>
      k.startsWith(`gen-${gens[1]!.generation}.`),
    );
    assert.equal(newer.length, 1, newer.join("\n"));
    assert.ok(brotliDecompressSync(await readFile(path.join(store, newer[0]!))).length > 0);
    const check = await fx.cli(["--json", "dr", "archive-list", "--from", store, "--check"]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const listed = JSON.parse(check.stdout).generations as { compression: string | null; encryption: null }[];
    assert.deepEqual(
      listed.map((g) => [g.compression, g.encryption]),
      [
        [null, null],
        ["br", null],
      ],
    );
    const human = await fx.cli(["dr", "archive-list", "--from", store]);
    assert.deepEqual(
      human.stdout.split("\n").filter((l) => l.startsWith("  segments: ")),
      ["  segments: uncompressed, plain", "  segments: brotli, plain"],
      human.stdout,
    );
    const latest = await restoreLatest(fx, store, "newest", true);
    assert.equal(latest.out.wal[RUN]!.seq, 29);
    const oldPoint = await inProcess(
      fx,
      ["--json", "dr", "archive-restore", "--from", store, "--at-seq", `${RUN}:25`],
      path.join(scratch.dir, "old-point", ".sdd"),
    );
    assert.equal(oldPoint.code, 0, oldPoint.stderr);
  });

  it("a gzipped generation (an earlier archiver's) is continued gzipped, compacted gzipped, and restores", async () => {
    const { fx, store, archiver: earlier } = await earlierArchiver("gzipped", "gzip");
    await appendDecisions(fx.ws, RUN, 10);
    assert.ok(await earlier.step(), earlier.health.snapshot().last_error ?? "");
    await appendDecisions(fx.ws, RUN, 10, 10);
    assert.ok(await earlier.step(), earlier.health.snapshot().last_error ?? "");
    await earlier.health.stopped();
    assert.equal((await records(store))[0]!.compression, "gzip");

    await appendDecisions(fx.ws, RUN, 10, 20);
    const resumed = await fx.cli(["--json", "dr", "archive", "--to", store, "--once"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((await records(store)).length, 1, "the same generation");
    const wal = await readFile(fx.ws.walFile(RUN));
    const segs = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(segs.length, 2, segs.join("\n"));
    for (const key of segs) {
      const name = parseArchiveKey(key)!;
      assert.ok(name.kind === "segment");
      const stored = await readFile(path.join(store, key));
      assert.ok(stored.subarray(0, 2).equals(GZIP_MAGIC), `${key} is gzip`);
      assert.ok(gunzipSync(stored).equals(wal.subarray(name.from, name.to)), `${key} holds its byte range`);
    }
    const compact = await fx.cli(["dr", "archive-compact", "--from", store, "--target-size", "1MiB"]);
    assert.equal(compact.code, 0, compact.stderr);
    const merged = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(merged.length, 1, merged.join("\n"));
    const whole = parseArchiveKey(merged[0]!)!;
    assert.ok(whole.kind === "segment");
    assert.ok(
      gunzipSync(await readFile(path.join(store, merged[0]!))).equals(wal.subarray(whole.from, whole.to)),
    );
    const human = await fx.cli(["dr", "archive-list", "--from", store, "--check"]);
    assert.equal(human.code, 0, human.stdout + human.stderr);
    assert.ok(human.stdout.includes("  segments: gzip, plain"), human.stdout);
    const { sdd, out } = await restoreLatest(fx, store, "gzipped-restored", true);
    assert.equal(out.wal[RUN]!.seq, 29);
    assert.ok((await readFile(path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`))).equals(wal));
  });

  it("a generation compressed in a form this version does not know is named, nothing restored", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "unknown"));
    const store = path.join(fx.dir, "store");
    await appendDecisions(fx.ws, RUN, 5);
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    const [record] = await records(store);
    const recordFile = [...(await storeObjects(store)).keys()].find(
      (k) => parseArchiveKey(k)?.kind === "generation",
    )!;
    await writeFile(path.join(store, recordFile), JSON.stringify({ ...record, compression: "zstd" }));
    const listed = await fx.cli(["dr", "archive-list", "--from", store]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.stdout.includes("  segments: zstd, plain"), listed.stdout);
    const into = path.join(scratch.dir, "unknown-restored", ".sdd");
    const r = await fx.cli(["dr", "archive-restore", "--from", store, "--latest"], into);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr.trim(), /its segments are compressed as "zstd", which this version does not read/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    await assert.rejects(readFile(path.join(into, "runtime", "wal", `${RUN}.wal.jsonl`)));
    const check = await fx.cli(["dr", "archive-list", "--from", store, "--check"]);
    assert.equal(check.code, 5, check.stdout + check.stderr);
    assert.match(check.stderr, /"zstd"/);
  });

  it("a segment that inflates beyond its byte range is refused and named, by restore and by --check", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "bomb"));
    const store = path.join(fx.dir, "store");
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    await appendDecisions(fx.ws, RUN, 5);
    assert.equal((await inProcess(fx, ["dr", "archive", "--to", store, "--once"])).code, 0);
    const [seg] = walSegments((await storeObjects(store)).keys(), RUN);
    // Its own lines, then 64 MB more: about 64 KB stored, its index made to match.
    await rewriteSegment(store, seg!, (await segmentText(store, seg!)) + "\n".repeat(64 * 1024 * 1024));
    assert.ok((await readFile(path.join(store, seg!))).length < 1024 * 1024);
    const r = await fx.cli(
      ["dr", "archive-restore", "--from", store, "--latest"],
      path.join(scratch.dir, "bomb-restored", ".sdd"),
    );
    assert.equal(r.code, 5, r.stderr);
    assert.ok(r.stderr.includes(seg!), r.stderr);
    // Refused once it passed its length, not after inflating all of it.
    const said = /truncated: (\d+) bytes, its name says (\d+)/.exec(r.stderr);
    assert.ok(said, r.stderr);
    assert.ok(Number(said[1]) < Number(said[2]) + 1024 * 1024, r.stderr);
    const check = await fx.cli(["--json", "dr", "archive-list", "--from", store, "--check"]);
    assert.equal(check.code, 5, check.stderr);
    const problems = JSON.parse(check.stdout).problems as { segment: string; reason: string }[];
    assert.ok(
      problems.some((p) => p.segment === seg && /does not inflate/.test(p.reason)),
      JSON.stringify(problems),
    );
  });
});
