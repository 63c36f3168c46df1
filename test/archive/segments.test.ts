/**
 * The WAL archive on a folder store, through the CLI (real processes, real files): shipping only
 * durable whole entries, restore to a seq, broken segments named by `archive-list --check` and
 * refused past them, and a new generation for a workspace restored in place.
 */
import assert from "node:assert/strict";
import { readFile, rm, truncate, writeFile, appendFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { scratchDir } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  checkedProblems,
  restored,
  sha256File,
  rewriteSegment,
  segmentText,
  storeObjects,
  walSegments,
  type ArchiveFixture,
} from "./support/archive-workspace.js";
import { copyStore } from "./support/archive-history.js";
import { computeEntryHash, entryLine, entryTimeMs, type WalEntry } from "../../src/wal/entry.js";

const RUN = "run-archive";

describe("dr archive / archive-list / archive-restore on a folder store", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: string;

  /** Three cycles of 10 decisions: three WAL segments after the base snapshot. */
  async function threeSegments(sub: string): Promise<{ fx: ArchiveFixture; store: string; segs: string[] }> {
    const fx = await archiveFixture(path.join(scratch.dir, sub));
    const st = path.join(scratch.dir, sub, "store");
    await appendDecisions(fx.ws, RUN, 5);
    assert.equal((await fx.cli(["dr", "archive", "--to", st, "--once"])).code, 0);
    for (let i = 0; i < 3; i++) {
      await appendDecisions(fx.ws, RUN, 10, 5 + i * 10);
      const r = await fx.cli(["dr", "archive", "--to", st, "--once"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const segs = walSegments((await storeObjects(st)).keys(), RUN);
    assert.equal(segs.length, 3, segs.join("\n"));
    return { fx, store: st, segs };
  }

  /**
   * One three-segment store, built once, copied for each damage test (they damage their copy and
   * read it; their workspace is only the CLI's environment).
   */
  let intact: Promise<{ fx: ArchiveFixture; store: string; segs: string[] }> | undefined;
  async function damageableCopy(sub: string): Promise<{ fx: ArchiveFixture; store: string; segs: string[] }> {
    intact ??= threeSegments("intact");
    const { fx, store: from, segs } = await intact;
    const st = path.join(scratch.dir, sub, "store");
    await copyStore(from, st);
    return { fx, store: st, segs };
  }

  before(async () => {
    scratch = await scratchDir("bernstein-archive-");
    f = await archiveFixture(path.join(scratch.dir, "main"));
    store = path.join(scratch.dir, "main", "store");
  });
  after(async () => scratch.cleanup());

  it("ships only whole, verified entries; a torn tail waits until it is complete", async () => {
    await appendDecisions(f.ws, RUN, 10);
    const half = '{"seq":10,"prev_hash":"';
    await appendFile(f.ws.walFile(RUN), half);
    const r = await f.cli(["--json", "dr", "archive", "--to", store, "--once"]);
    assert.equal(r.code, 0, r.stderr);
    const segs = walSegments((await storeObjects(store)).keys(), RUN);
    // The snapshot holds seq 0-9; nothing after it is whole yet.
    assert.deepEqual(segs, []);
    const size = (await readFile(f.ws.walFile(RUN))).length;
    await truncate(f.ws.walFile(RUN), size - half.length);
    await appendDecisions(f.ws, RUN, 4, 10);
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    const after = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(after.length, 1);
    assert.match(after[0]!, /\.s10-13$/);
    const restored = path.join(scratch.dir, "main", "restored", ".sdd");
    const rr = await f.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], restored);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(JSON.parse(rr.stdout).wal[RUN].seq, 13);
    assert.equal(
      await sha256File(path.join(restored, "runtime/wal", `${RUN}.wal.jsonl`)),
      await sha256File(f.ws.walFile(RUN)),
    );
    for (const cmd of [["wal", "verify"], ["audit", "verify"], ["doctor"]]) {
      const v = await f.cli(cmd, restored);
      assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
    }
  });

  it("restores to a seq: the WAL ends exactly there and every other log is cut at its instant", async () => {
    const restored = path.join(scratch.dir, "main", "at-seq", ".sdd");
    const r = await f.cli(
      ["--json", "dr", "archive-restore", "--from", store, "--at-seq", `${RUN}:11`],
      restored,
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = (await readFile(path.join(restored, "runtime/wal", `${RUN}.wal.jsonl`), "utf8"))
      .trimEnd()
      .split("\n");
    assert.equal(lines.length, 12);
    assert.equal(JSON.parse(lines[11]!).seq, 11);
    const bad = await f.cli(
      ["dr", "archive-restore", "--from", store, "--at-seq", `${RUN}:99`],
      restored + "2",
    );
    assert.equal(bad.code, 2, bad.stderr);
    const early = await f.cli(
      ["dr", "archive-restore", "--from", store, "--at", "2001-01-01T00:00:00Z"],
      restored + "3",
    );
    assert.equal(early.code, 2);
    assert.match(early.stderr, /outside the archive's window \(g\d{8}T\d{9}Z-[0-9a-f]{4}: /);
  });

  /**
   * A segment and its index rewritten together, so its sha256 matches: `relinked` re-hashes its
   * chain from another prev_hash (every line valid, linking nowhere); `bad-line` holds a line
   * whose hash does not match (a buggy archiver wrote it so).
   */
  async function rewriteWithIndex(st: string, key: string, how: "relinked" | "bad-line"): Promise<void> {
    let text = await segmentText(st, key);
    if (how === "bad-line") text = text.replace('"T-1', '"T-9');
    else {
      let prev = "f".repeat(64);
      text = text
        .split("\n")
        .slice(0, -1)
        .map((l) => {
          const { entry_hash: _, ...rest } = JSON.parse(l) as WalEntry;
          const body = { ...rest, prev_hash: prev };
          prev = computeEntryHash(body);
          return entryLine({ ...body, entry_hash: prev });
        })
        .join("");
    }
    await rewriteSegment(st, key, text);
  }

  for (const damage of ["altered", "truncated", "missing", "unindexed", "relinked", "bad-line"] as const) {
    it(`a ${damage} segment in the middle is named; restore before it works, after it exits 5 unless --last-consistent`, async () => {
      const { fx, store: st, segs } = await damageableCopy(damage);
      const middle = path.join(st, segs[1]!);
      const bytes = await readFile(middle);
      if (damage === "altered") {
        // One bit of the stored (compressed) bytes, its size unchanged.
        bytes[bytes.length >> 1] ^= 0x01;
        await writeFile(middle, bytes);
      } else if (damage === "truncated") {
        await writeFile(middle, bytes.subarray(0, bytes.length - 7));
      } else if (damage === "unindexed") {
        await rm(path.join(st, `.${segs[1]!}.meta.json`));
      } else if (damage === "relinked" || damage === "bad-line") {
        await rewriteWithIndex(st, segs[1]!, damage);
      } else {
        await rm(middle);
      }
      // One damage through the CLI (exit codes, --json); the others through what it runs.
      const cli = damage === "altered" ? "archive-" : undefined;
      const problems = await checkedProblems(fx, st, cli);
      assert.ok(
        problems.some((p) => p.segment === (damage === "missing" ? segs[2] : segs[1])),
        JSON.stringify(problems),
      );
      if (damage === "relinked" || damage === "bad-line")
        assert.ok(
          problems.every((p) => !/sha256|inflate|truncated/.test(p.reason)),
          `its bytes match its index: only its lines tell (${JSON.stringify(problems)})`,
        );
      if (damage === "unindexed")
        assert.deepEqual(
          problems.map((p) => p.reason),
          ["its index is missing: no sha256 to check its bytes against"],
          "named as what it is, the segment after it not blamed",
        );
      const target = (n: string) => path.join(scratch.dir, damage, n, ".sdd");
      const before = await restored(fx, st, ["--at-seq", `${RUN}:10`], target("a"), cli);
      assert.equal(before.code, 0, before.stderr);
      assert.equal(before.doc?.wal[RUN]?.seq, 10);
      const past = await restored(fx, st, ["--at-seq", `${RUN}:30`], target("b"), cli);
      assert.equal(past.code, 5, past.stderr);
      assert.ok(past.stderr.includes(damage === "missing" ? segs[2]! : segs[1]!), past.stderr);
      const last = await restored(fx, st, ["--latest", "--last-consistent"], target("c"), cli);
      assert.equal(last.code, 0, last.stderr);
      assert.equal(last.doc?.wal[RUN]?.seq, 14);
      assert.ok(last.doc?.broken);
      // A lost or unindexed segment's lines have no known time: the point again is --at-seq of
      // the last entry kept.
      const untimed = damage === "missing" || damage === "unindexed";
      assert.equal(last.doc.broken.at_seq, untimed ? `${RUN}:14` : undefined);
      if (damage === "missing") {
        // A point inside the lost segment's span, the segment after it starting later: the
        // entries lost are at or before the point, so it is refused, not restored without them.
        const lines = (await readFile(fx.ws.walFile(RUN), "utf8")).trimEnd().split("\n");
        const at = new Date(entryTimeMs((JSON.parse(lines[15]!) as WalEntry).timestamp)).toISOString();
        const inside = await restored(fx, st, ["--at", at], target("d"), "", false);
        assert.equal(inside.code, 5, inside.stderr);
        assert.equal(inside.stderr.trimEnd().split("\n").length, 1, inside.stderr);
        assert.ok(inside.stderr.includes(segs[2]!) && inside.stderr.includes("(seq 15-24)"), inside.stderr);
        const verify = await fx.cli(["dr", "verify", "--from", st, "--at", at]);
        assert.equal(verify.code, 5, verify.stdout + verify.stderr);
        // A seq inside the hole: the entry was made and is lost (exit 5), not "not in the archive".
        const gap = await restored(fx, st, ["--at-seq", `${RUN}:20`], target("e"));
        assert.equal(gap.code, 5, gap.stderr);
        assert.ok(gap.stderr.includes(segs[2]!), gap.stderr);
        const lastGap = await restored(fx, st, ["--at-seq", `${RUN}:20`, "--last-consistent"], target("f"));
        assert.equal(lastGap.code, 0, lastGap.stderr);
        assert.equal(lastGap.doc?.wal[RUN]?.seq, 14);
      }
    });
  }

  it("a lost segment of another stream (run records): a point after the lines before it is refused naming it; --last-consistent stops before them", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "records"));
    const st = path.join(scratch.dir, "records", "store");
    const records = path.join(fx.sdd, "runs", "records.jsonl");
    const times: string[] = [];
    for (let i = 0; i < 4; i++) {
      times.push(new Date().toISOString());
      await appendFile(records, JSON.stringify({ created_at: times[i], n: i }) + "\n");
      await appendDecisions(fx.ws, RUN, i === 0 ? 5 : 2, i === 0 ? 0 : 3 + 2 * i);
      const r = await fx.cli(["dr", "archive", "--to", st, "--once"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const segs = [...(await storeObjects(st)).keys()]
      .filter((k) => k.includes(".seg.runs%2Frecords.jsonl."))
      .sort();
    assert.equal(segs.length, 3, segs.join("\n"));
    await rm(path.join(st, segs[1]!));
    await rm(path.join(st, `.${segs[1]!}.meta.json`));
    const target = (n: string) => path.join(scratch.dir, "records", n, ".sdd");
    // Record 2's own instant: the segment after the hole starts later, the lost one holds it.
    const r = await fx.cli(["dr", "restore", "--from", st, "--at", times[2]!], target("a"));
    assert.equal(r.code, 5, r.stdout + r.stderr);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.ok(r.stderr.includes(segs[2]!), r.stderr);
    const before = await restored(fx, st, ["--at", times[1]!], target("b"));
    assert.equal(
      before.code,
      5,
      "record 1 is the last line before the hole, whose lines may share its instant",
    );
    const last = await restored(fx, st, ["--at", times[2]!, "--last-consistent"], target("c"));
    assert.equal(last.code, 0, last.stderr);
    assert.ok(last.doc?.broken);
    // Just before record 1: the hole's lines may share its millisecond.
    const kept = (await readFile(path.join(target("c"), "runs", "records.jsonl"), "utf8"))
      .trimEnd()
      .split("\n");
    assert.deepEqual(
      kept.map((l) => (JSON.parse(l) as { n: number }).n),
      [0],
    );
    assert.equal(last.doc?.wal[RUN]?.seq, 4);
  });

  it("a WAL entry altered locally inside a segment is shipped, then named by archive-list --check and refused by restore past it", async () => {
    const fx = await archiveFixture(path.join(scratch.dir, "local"));
    const st = path.join(scratch.dir, "local", "store");
    await appendDecisions(fx.ws, RUN, 5);
    assert.equal((await fx.cli(["dr", "archive", "--to", st, "--once"])).code, 0);
    await appendDecisions(fx.ws, RUN, 10, 5);
    // Bit rot after the writer's fsync: seq 9's payload changes, its frame (seq, links) does not.
    const wal = fx.ws.walFile(RUN);
    const text = await readFile(wal, "utf8");
    assert.ok(text.includes('"T-9"'));
    await writeFile(wal, text.replace('"T-9"', '"T-8"'));
    const r = await fx.cli(["dr", "archive", "--to", st, "--once"]);
    assert.equal(r.code, 0, r.stderr);
    const segs = walSegments((await storeObjects(st)).keys(), RUN);
    assert.equal(segs.length, 1, segs.join("\n"));
    assert.match(segs[0]!, /\.s5-14$/);
    const check = await fx.cli(["--json", "dr", "archive-list", "--from", st, "--check"]);
    assert.equal(check.code, 5, check.stderr);
    const problems = JSON.parse(check.stdout).problems as { segment: string; reason: string }[];
    assert.ok(
      problems.some(
        (p) => p.segment === segs[0] && /entry_hash .* does not match the content/.test(p.reason),
      ),
      JSON.stringify(problems),
    );
    const target = (n: string) => path.join(scratch.dir, "local", n, ".sdd");
    // Seq 5: the first entry after the base snapshot (one it holds is before the window).
    const before = await fx.cli(
      ["--json", "dr", "archive-restore", "--from", st, "--at-seq", `${RUN}:5`],
      target("a"),
    );
    assert.equal(before.code, 0, before.stderr);
    assert.equal(JSON.parse(before.stdout).wal[RUN].seq, 5);
    const past = await fx.cli(["dr", "archive-restore", "--from", st, "--at-seq", `${RUN}:14`], target("b"));
    assert.equal(past.code, 5, past.stderr);
    assert.ok(past.stderr.includes(segs[0]!), past.stderr);
    // The workspace's own check names the entry too.
    const verify = await fx.cli(["wal", "verify"]);
    assert.notEqual(verify.code, 0, verify.stdout);
  });

  it("a workspace restored in place and archived again starts a new generation; the old one stays restorable", async () => {
    const { fx, store: st } = await threeSegments("regen");
    const first = JSON.parse(
      (await fx.cli(["--json", "dr", "archive-list", "--from", st])).stdout,
    ).generations;
    assert.equal(first.length, 1);
    const back = await fx.cli(["dr", "archive-restore", "--from", st, "--at-seq", `${RUN}:12`]);
    assert.equal(back.code, 0, back.stderr);
    await appendDecisions(fx.ws, RUN, 3, 13);
    const again = await fx.cli(["--json", "dr", "archive", "--to", st, "--once"]);
    assert.equal(again.code, 0, again.stderr);
    const gens = JSON.parse(
      (await fx.cli(["--json", "dr", "archive-list", "--from", st, "--check"])).stdout,
    ).generations;
    assert.equal(gens.length, 2);
    assert.equal(gens[1].previous, gens[0].generation);
    assert.match(gens[1].cause, /no longer holds what generation/);
    const old = await fx.cli(
      ["--json", "dr", "archive-restore", "--from", st, "--at-seq", `${RUN}:30`],
      path.join(scratch.dir, "regen", "old", ".sdd"),
    );
    assert.equal(old.code, 0, old.stderr);
    assert.equal(JSON.parse(old.stdout).generation, gens[0].generation);
  });
});
