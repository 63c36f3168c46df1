/**
 * Names read from an archive are no paths to write: a key in a segment's shape whose stream
 * leaves `.sdd/` (`..`, absolute, another folder, an undecodable `%`) is a hostile or damaged
 * object of its generation. `dr list --check` names it, a restore refuses (exit 5) and writes
 * nothing anywhere; a snapshot index naming such a stream is damaged.
 */
import assert from "node:assert/strict";
import { copyFile, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isStream, parseArchiveKey, streamFile } from "../../src/archive/names.js";
import { UserError } from "../../src/errors/errors.js";
import {
  appendDecisions,
  archivedFixture,
  walSegments,
  type ArchivedFixture,
} from "./support/archive-workspace.js";

const RUN = "run-hostile";

/** Every path under `dir` whose name holds `part`. */
async function found(dir: string, part: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true });
  return all.filter((p) => path.basename(p).includes(part));
}

describe("hostile stream names in a WAL archive", () => {
  let fx: ArchivedFixture;
  let genuine: string;

  before(async () => {
    fx = await archivedFixture("bernstein-hostile-names-");
    await appendDecisions(fx.f.ws, RUN, 4);
    await fx.archive();
    // Entries after the base snapshot: a segment.
    await appendDecisions(fx.f.ws, RUN, 4, 4);
    await fx.archive();
    genuine = walSegments(
      (await readdir(fx.store)).filter((k) => !k.startsWith(".")),
      RUN,
    )[0]!;
  });
  after(async () => fx.scratch.cleanup());

  /** A copy of the genuine WAL segment (and its sidecar) as `gen-<G>.seg.<stream>.<range>`. */
  async function plant(encodedStream: string): Promise<string> {
    const gen = genuine.slice(0, genuine.indexOf(".seg."));
    const range = /\.(\d{16}-\d{16})\.s\d+-\d+$/.exec(genuine)![1]!;
    const key = `${gen}.seg.${encodedStream}.${range}`;
    await copyFile(path.join(fx.store, genuine), path.join(fx.store, key));
    await copyFile(path.join(fx.store, `.${genuine}.meta.json`), path.join(fx.store, `.${key}.meta.json`));
    return key;
  }

  it("dr list --check names the planted objects, and a restore refuses without writing outside its target", async () => {
    const planted = [
      await plant("audit%2F..%2F..%2F..%2FPWNED.jsonl"),
      await plant(encodeURIComponent(path.join(fx.scratch.dir, "PWNED.jsonl"))),
      await plant("runtime%2Fwal%2F..%2F..%2F..%2FPWNED.wal.jsonl"),
      await plant("audit%2FPWNED%ZZ.jsonl"),
    ];
    const check = await fx.f.cli(["--json", "dr", "list", "--from", fx.store, "--check"]);
    assert.equal(check.code, 5, check.stderr);
    const problems = JSON.parse(check.stdout).problems as { segment: string; reason: string }[];
    assert.deepEqual(problems.map((p) => p.segment).sort(), [...planted].sort());
    for (const p of problems)
      assert.match(p.reason, /^not a segment: its stream .* is none an archiver ships/);

    const target = path.join(fx.scratch.dir, "w2", "r", ".sdd");
    const r = await fx.f.cli(["dr", "restore", "--from", fx.store, "--latest"], target);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /is none an archiver ships.*hostile or damaged.*nothing restored/);
    const outsideStore = (await found(fx.scratch.dir, "PWNED")).filter(
      (p) => !p.startsWith(`store${path.sep}`),
    );
    assert.deepEqual(outsideStore, []);
    assert.equal((await readdir(fx.scratch.dir)).includes("w2"), false);
  });

  it("a snapshot index whose streams name a path outside .sdd/ is damaged", async () => {
    const index = (await readdir(fx.store)).find((k) => k.endsWith(".idx.json"))!;
    const doc = JSON.parse(await readFile(path.join(fx.store, index), "utf8"));
    const [first] = Object.keys(doc.streams);
    doc.streams["runtime/wal/../../../PWNED.wal.jsonl"] = doc.streams[first!];
    await writeFile(path.join(fx.store, index), JSON.stringify(doc));
    const check = await fx.f.cli(["--json", "dr", "list", "--from", fx.store, "--check"]);
    assert.equal(check.code, 5, check.stderr);
    const problems = JSON.parse(check.stdout).problems as { segment: string; reason: string }[];
    assert.ok(
      problems.some((p) => p.segment === index && /is no stream an archiver ships/.test(p.reason)),
      JSON.stringify(problems),
    );
  });

  it("only the streams an archiver ships are streams; the writer's path stays inside its root", () => {
    for (const ok of [
      "audit/2026-01-01.jsonl",
      "runs/backups.jsonl",
      "metrics/cost-ledger.jsonl",
      "runtime/wal/idempotency.jsonl",
      "runtime/wal/run-20260101T000000000Z-abcd.wal.jsonl",
      "runtime/wal/run-golden.wal.jsonl",
    ])
      assert.equal(isStream(ok), true, ok);
    for (const bad of [
      "audit/../PWNED.jsonl",
      "/etc/PWNED.jsonl",
      "audit/a/b.jsonl",
      "audit/a\\b.jsonl",
      "audit/a\nb.jsonl",
      "audit/a\0b.jsonl",
      "runtime/wal/../x.wal.jsonl",
      "runtime/wal/.hidden.wal.jsonl",
      "backlog/open/x.jsonl",
      "metrics/other.jsonl",
    ]) {
      assert.equal(isStream(bad), false, bad);
      assert.throws(() => streamFile("/tmp/root/.sdd", bad), UserError, bad);
      const key = `gen-g20260101T000000000Z-abcd.seg.${encodeURIComponent(bad)}.0000000000000000-0000000000000010`;
      assert.equal(parseArchiveKey(key)?.kind, "refused-segment", bad);
    }
    assert.equal(streamFile("/tmp/root/.sdd", "audit/x.jsonl"), "/tmp/root/.sdd/audit/x.jsonl");
  });
});
