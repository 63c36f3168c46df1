/**
 * `dr restore | verify | drill | list --from ARCHIVE` (issue 16 items 4 and 5) through the CLI:
 * `--at` is an instant when `--from` names a WAL archive and a catalogue location with `--latest`
 * and no `--from`; ambiguous combinations exit 2; a restore keeps the previous target; verify and
 * drill write nothing but a scratch folder they remove, and name the first broken segment (exit 5).
 */
import assert from "node:assert/strict";
import { cp, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parseAt } from "../../src/cli/commands/dr/archive-point.js";
import { entryTimeMs } from "../../src/wal/entry.js";
import { scratchDir } from "../helpers.js";
import {
  appendDecisions,
  archiveFixture,
  checkedProblems,
  restored,
  storeObjects,
  walSegments,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const RUN = "run-point";
const outOfRange =
  /--at \S+: out of range: an instant from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59\.999Z, or @<epoch seconds> up to @253402300799 /;
const walLines = async (sdd: string): Promise<number> =>
  (await readFile(path.join(sdd, "runtime/wal", `${RUN}.wal.jsonl`), "utf8")).trimEnd().split("\n").length;

describe("dr restore / verify / drill / list --from a WAL archive", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  let store: string;
  let backups: string;
  let backupFile: string;
  let tmp: string;
  let segs: string[];

  before(async () => {
    scratch = await scratchDir("bernstein-archive-point-");
    tmp = path.join(scratch.dir, "tmp");
    await mkdir(tmp);
    // The scratch folders of verify and drill go here, so the test sees that they are removed.
    f = await archiveFixture(scratch.dir, { TMPDIR: tmp });
    store = path.join(scratch.dir, "store");
    backups = path.join(scratch.dir, "backups");
    await appendDecisions(f.ws, RUN, 5);
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    for (let i = 0; i < 3; i++) {
      await appendDecisions(f.ws, RUN, 10, 5 + i * 10);
      const r = await f.cli(["dr", "archive", "--to", store, "--once"]);
      assert.equal(r.code, 0, r.stderr);
    }
    segs = walSegments((await storeObjects(store)).keys(), RUN);
    assert.equal(segs.length, 3, segs.join("\n"));
    const b = await f.cli(["--json", "dr", "backup", "--to-dir", backups]);
    assert.equal(b.code, 0, b.stderr);
    backupFile = JSON.parse(b.stdout).path as string;
  });
  after(async () => scratch.cleanup());

  it("dr list --from: generations, windows and gaps; --check; --at still lists backups", async () => {
    const r = await f.cli(["--json", "dr", "list", "--from", store, "--check"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.generations.length, 1);
    assert.equal(doc.generations[0].segments, 3);
    assert.ok(doc.generations[0].earliest <= doc.generations[0].latest);
    assert.deepEqual(doc.problems, []);
    const human = await f.cli(["dr", "list", "--from", store]);
    assert.match(
      human.stdout,
      /^g\d{8}T\d{9}Z-[0-9a-f]{4} {2}\S+ \.\. \S+ {2}1 snapshot\(s\), 3 segment\(s\)$/m,
    );
    const old = await f.cli(["--json", "dr", "list", "--at", backups]);
    assert.equal(old.code, 0, old.stderr);
    assert.equal(JSON.parse(old.stdout).backups.length, 1);
    for (const [args, re] of [
      [["--from", backups], /no WAL archive there .*listed with --at/],
      [["--from", store, "--at", backups], /give --at LOCATION .* or --from LOCATION .*not both/],
      [[], /give --at LOCATION/],
      [["--from", store, "--check", "--deep"], /--deep is for --at/],
    ] as const) {
      const bad = await f.cli(["dr", "list", ...args]);
      assert.equal(bad.code, 2, `${args.join(" ")}: ${bad.stderr}`);
      assert.match(bad.stderr, re);
      assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
    }
  });

  it("a configuration file's backup.destination does not stand in the way of --from (dr list, dr prune)", async () => {
    const config = path.join(path.dirname(f.sdd), "bernstein.yaml");
    await writeFile(config, `backup:\n  destination: ${backups}\n`);
    try {
      const listed = await f.cli(["--json", "dr", "list", "--from", store]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal(JSON.parse(listed.stdout).generations.length, 1);
      const backupsListed = await f.cli(["--json", "dr", "list"]);
      assert.equal(backupsListed.code, 0, backupsListed.stderr);
      assert.equal(JSON.parse(backupsListed.stdout).backups.length, 1, "the file's destination, as before");
      const pruned = await f.cli(["--json", "dr", "prune", "--from", store, "--keep-last", "1", "--dry-run"]);
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.equal(JSON.parse(pruned.stdout).kind, "wal-archive");
    } finally {
      await rm(config, { force: true });
    }
  });

  it("dr restore --from ARCHIVE --at-seq / --at: the point, --json, and the previous target kept", async () => {
    const target = path.join(scratch.dir, "r", ".sdd");
    const first = await f.cli(["--json", "dr", "restore", "--from", store, "--at-seq", `${RUN}:11`], target);
    assert.equal(first.code, 0, first.stderr);
    const doc = JSON.parse(first.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.wal[RUN].seq, 11);
    assert.equal(await walLines(target), 12);
    // The instant of that point, given as --at, restores over the first restore: every entry
    // stamped at or before it (entries share a millisecond, so seq 11 and maybe a few after).
    const again = await f.cli(["--json", "dr", "restore", "--from", store, "--at", doc.at], target);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout);
    assert.ok(second.wal[RUN].seq >= 11 && second.wal[RUN].seq < 34, again.stdout);
    assert.equal(await walLines(target), second.wal[RUN].seq + 1);
    const stamps = (await readFile(path.join(target, "runtime/wal", `${RUN}.wal.jsonl`), "utf8"))
      .trimEnd()
      .split("\n")
      .map((l) => entryTimeMs(JSON.parse(l).timestamp));
    assert.ok(Math.max(...stamps) <= Date.parse(doc.at), "nothing after the instant");
    assert.match(second.kept, /\.sdd\.pre-restore-\d{8}T\d{6}Z/);
    assert.equal(await walLines(second.kept), 12, "the previous target is kept whole");
    for (const cmd of [["wal", "verify"], ["audit", "verify"], ["doctor"]]) {
      const v = await f.cli(cmd, target);
      assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
    }
  });

  it("--at keeps its old meaning with --latest and no --from; ambiguous combinations exit 2", async () => {
    const old = await f.cli(
      ["--json", "dr", "restore", "--latest", "--at", backups],
      path.join(scratch.dir, "old", ".sdd"),
    );
    assert.equal(old.code, 0, old.stderr);
    assert.match(JSON.parse(old.stdout).source, /bernstein-backup-.*\.tar\.gz$/);
    const at = "2026-01-01T00:00:00Z";
    for (const [cmd, args, re] of [
      [
        "restore",
        ["--from", store],
        /holds a WAL archive: give exactly one of --at TIME, --at-seq RUN:SEQ and --latest/,
      ],
      ["restore", ["--from", store, "--at", at, "--latest"], /give exactly one of/],
      ["restore", ["--from", store, "--at", backups], /from a WAL archive, --at is an instant/],
      ["restore", ["--from", backups, "--at", at], /holds no WAL archive/],
      [
        "restore",
        ["--from", "no-such-store", "--at", at],
        /: --from no-such-store: no such file or folder$/m,
      ],
      ["restore", ["--at-seq", `${RUN}:3`], /--at-seq needs --from LOCATION naming a WAL archive/],
      ["restore", ["--latest", "--last-consistent", "--at", backups], /--last-consistent needs --from/],
      ["restore", ["--from", store, "--latest", "--dry-run"], /--dry-run .* does not apply to a WAL archive/],
      // Before the window: no hint about --latest.
      [
        "restore",
        ["--from", store, "--at", "2001-01-01T00:00:00Z"],
        /outside the archive's window \(g[^;]*\)$/m,
      ],
      [
        "restore",
        ["--from", store, "--at", "2100-01-01T00:00:00Z"],
        /outside the archive's window \(.*\); nothing newer than \d{4}-\d\d-\d\dT[\d:.]+Z is archived \(--latest restores to it\)$/m,
      ],
      [
        "restore",
        ["--from", store, "--at-seq", `${RUN}:100000`],
        new RegExp(`--at-seq ${RUN}:100000 is not in the archive: it holds ${RUN} up to seq \\d+ \\(g`),
      ],
      [
        "restore",
        ["--from", store, "--at-seq", "run-20200101T000000000Z-abcd:1"],
        /is not in the archive: it holds no entry of WAL run run-20200101T000000000Z-abcd \(g/,
      ],
      [
        "restore",
        ["--from", store, "--at", "2001-01-01T02:00:00+02:00"],
        /--at 2001-01-01T02:00:00\+02:00 \(2001-01-01T00:00:00\.000Z\) is outside the archive's window/,
      ],
      ["verify", ["--from", backups, "--at-seq", `${RUN}:3`], /holds no WAL archive/],
      ["drill", ["--at", at], /need --from LOCATION naming a WAL archive/],
      ["drill", ["--from", backups, "--latest"], /holds no WAL archive/],
      [
        "drill",
        ["--from", backupFile],
        /--from .*\.tar\.gz is a file, not a WAL archive; a drill makes its own backup, and 'dr verify --from .*\.tar\.gz' checks/,
      ],
      [
        "drill",
        ["--from", path.join(scratch.dir, "missing.tar.gz")],
        /--from .*missing\.tar\.gz: no such file or folder$/m,
      ],
      ["drill", ["--from", store, "--latest", "--encrypt"], /--encrypt is for the drill's own backup/],
      // Microseconds typed for seconds: beyond what a Date holds.
      ...(["restore", "verify", "drill"] as const).map(
        (c) => [c, ["--from", store, "--at", "@1796624861642000"], outOfRange] as const,
      ),
    ] as const) {
      const target = path.join(scratch.dir, "never", ".sdd");
      const bad = await f.cli(["dr", cmd, ...args], target);
      assert.equal(bad.code, 2, `dr ${cmd} ${args.join(" ")}: ${bad.stderr}`);
      assert.match(bad.stderr, re);
      assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
      assert.deepEqual(await readdir(path.join(scratch.dir, "never")).catch(() => []), []);
    }
  });

  it("dr verify and dr drill --from ARCHIVE check a point and leave nothing behind", async () => {
    const v = await f.cli(["--json", "dr", "verify", "--from", store, "--at-seq", `${RUN}:20`]);
    assert.equal(v.code, 0, v.stderr);
    const vd = JSON.parse(v.stdout);
    assert.equal(vd.ok, true);
    assert.equal(vd.wal[RUN].seq, 20);
    assert.ok(
      vd.checks.some((c: { name: string; status: string }) => c.name === `wal ${RUN}` && c.status === "ok"),
    );
    assert.ok(
      vd.checks.every((c: { status: string }) => c.status !== "failed"),
      v.stdout,
    );
    const d = await f.cli(["--json", "dr", "drill", "--from", store, "--latest"]);
    assert.equal(d.code, 0, d.stderr);
    const dd = JSON.parse(d.stdout);
    assert.equal(dd.ok, true);
    assert.deepEqual(
      dd.steps.map((s: { name: string; ok: boolean }) => [s.name, s.ok]),
      [
        ["restore", true],
        ["verify", true],
        ["doctor", true],
      ],
    );
    assert.equal(dd.point.wal[RUN].seq, 34);
    // A --key-file that is not there fails the audit check, for a point as for a backup file.
    const noKey = path.join(scratch.dir, "no-such-key");
    for (const from of [[store, "--latest"], [backupFile]]) {
      const k = await f.cli(["dr", "verify", "--from", ...from, "--key-file", noKey]);
      assert.equal(k.code, 1, `${from}: ${k.stdout}${k.stderr}`);
      assert.match(k.stdout, /^ {2}\[FAIL\] audit: .*no audit key at .*no-such-key/m);
    }
    assert.deepEqual(await readdir(tmp), [], "the scratch folders are removed");
  });

  it("a broken segment: dr verify and dr drill name it (exit 5); before it, or --last-consistent, they pass", async () => {
    const copy = path.join(scratch.dir, "broken-store");
    // Every file: the segments' indexes are hidden metadata files beside them.
    await cp(store, copy, { recursive: true });
    const middle = path.join(copy, segs[1]!);
    const bytes = await readFile(middle);
    const i = bytes.indexOf("T-");
    bytes[i + 2] = bytes[i + 2] === 0x31 ? 0x32 : 0x31;
    await writeFile(middle, bytes);
    const v = await f.cli(["dr", "verify", "--from", copy, "--latest"]);
    assert.equal(v.code, 5, v.stderr);
    assert.ok(v.stderr.includes(segs[1]!), v.stderr);
    assert.equal(v.stderr.trimEnd().split("\n").length, 1, v.stderr);
    const d = await f.cli(["--json", "dr", "drill", "--from", copy, "--latest"]);
    assert.equal(d.code, 5, d.stderr);
    assert.equal(JSON.parse(d.stdout).steps[0].ok, false);
    assert.ok(JSON.parse(d.stdout).steps[0].detail.includes(segs[1]!));
    const human = await f.cli(["dr", "drill", "--from", copy, "--latest"]);
    assert.equal(human.code, 5, human.stderr);
    assert.match(human.stdout, /^Restore drill of .*broken-store \(plain WAL archive\):$/m);
    assert.match(human.stdout, /^ {2}\[FAIL\] restore /m);
    assert.doesNotMatch(human.stdout, /RTO|null/, "a failed restore measured no RTO");
    assert.equal(JSON.parse(d.stdout).rto_ms, null);
    const before = await f.cli(["dr", "verify", "--from", copy, "--at-seq", `${RUN}:10`]);
    assert.equal(before.code, 0, before.stderr);
    const last = await f.cli(["--json", "dr", "verify", "--from", copy, "--latest", "--last-consistent"]);
    assert.equal(last.code, 0, last.stderr);
    assert.equal(JSON.parse(last.stdout).wal[RUN].seq, 14);
    assert.equal(JSON.parse(last.stdout).broken.segment, segs[1]);
    assert.deepEqual(await readdir(tmp), []);
  });

  it("--at refuses an instant out of range in one line (exit 2), not a RangeError later", () => {
    for (const text of [
      "@1796624861642000",
      "@253402300800",
      "+275760-09-13T00:00:00Z",
      "-000001-01-01T00:00:00Z",
    ])
      assert.throws(
        () => parseAt(text),
        (err: Error & { exitCode?: number }) => err.exitCode === 2 && outOfRange.test(err.message),
        text,
      );
    assert.equal(parseAt("@253402300799"), 253402300799000);
    assert.equal(parseAt("0000-01-01T00:00:00Z"), Date.parse("0000-01-01T00:00:00Z"));
  });

  it("--at refuses a day its month does not have (Date.parse would carry it into the next month)", () => {
    assert.throws(
      () => parseAt("2026-02-30T00:00:00Z"),
      /^UserError: --at 2026-02-30T00:00:00Z: no such day \(2026-02 has 28 days\)$/,
    );
    assert.throws(() => parseAt("2026-11-31T12:00:00+01:00"), /no such day \(2026-11 has 30 days\)/);
    assert.equal(parseAt("2024-02-29T00:00:00Z"), Date.UTC(2024, 1, 29));
    assert.equal(parseAt("2026-12-31T23:59:59.5Z"), Date.UTC(2026, 11, 31, 23, 59, 59, 500));
  });

  it("a damaged snapshot index, generation record or base snapshot: dr list --check and dr restore name it (exit 5, one line); prune does not trip on it", async () => {
    const keys = [...(await storeObjects(store)).keys()];
    const record = keys.find((k) => /^gen-[^.]+\.json$/.test(k))!;
    const index = keys.find((k) => k.endsWith(".snap-000000.idx.json"))!;
    const snapshot = keys.find((k) => /\.snap-000000\.tar\.gz$/.test(k))!;
    assert.ok(record && index && snapshot, keys.join("\n"));
    const flip = async (file: string): Promise<void> => {
      const bytes = await readFile(file);
      bytes[bytes.length >> 1] ^= 0xff;
      await writeFile(file, bytes);
    };
    const cases: [string, (copy: string) => Promise<void>, string, RegExp][] = [
      ["index {}", (c) => writeFile(path.join(c, index), "{}\n"), index, /snapshot index: format: missing/],
      ["index garbage", (c) => writeFile(path.join(c, index), "{garbage"), index, /not valid JSON/],
      ["record garbage", (c) => writeFile(path.join(c, record), "{garbage"), record, /not valid JSON/],
      ["record missing", (c) => rm(path.join(c, record)), record, /: missing/],
      ["snapshot altered", (c) => flip(path.join(c, snapshot)), snapshot, /snapshot: altered|corrupt/],
      ["snapshot missing", (c) => rm(path.join(c, snapshot)), snapshot, /missing/],
    ];
    for (const [what, damage, named, reason] of cases) {
      const copy = path.join(scratch.dir, `damaged-${what.replace(/\W+/g, "-")}`);
      await cp(store, copy, { recursive: true });
      await damage(copy);
      // The first damage through the CLI (exit 5, --json, one line); the others through what
      // dr list --check and dr restore run. dr prune runs for each (it decides what the copy is).
      const cli = what === cases[0]![0] ? "" : undefined;
      const problems = await checkedProblems(f, copy, cli);
      const found = problems.find((p) => p.segment === named);
      assert.ok(found, `${what}: ${JSON.stringify(problems)}`);
      if (!what.startsWith("snapshot altered")) assert.match(found.reason, reason, what);
      const target = path.join(scratch.dir, `restored-${what.replace(/\W+/g, "-")}`, ".sdd");
      const r = await restored(f, copy, ["--latest"], target, cli, false);
      assert.equal(r.code, 5, `${what}: ${r.stderr}`);
      assert.ok(r.stderr.includes(named), `${what}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      const prune = await f.cli(["dr", "prune", "--from", copy, "--keep-within", "7d", "--dry-run"]);
      assert.equal(prune.code, 0, `${what}: ${prune.stderr}`);
    }
  });

  it("one location holds backups or a WAL archive, never both: dr archive --to and dr backup --to-dir refuse the other's (exit 2)", async () => {
    const a = await f.cli(["dr", "archive", "--to", backups, "--once"]);
    assert.equal(a.code, 2, a.stderr);
    assert.equal(a.stdout, "", "a refused run prints no 'Archiving ...' first");
    assert.match(
      a.stderr,
      /holds 1 backup\(s\) \(bernstein-backup-.*\): a WAL archive's location holds nothing else/,
    );
    const b = await f.cli(["--json", "dr", "backup", "--to-dir", store]);
    assert.equal(b.code, 2, b.stderr);
    assert.match(JSON.parse(b.stdout).error, /holds a WAL archive \(gen-\* objects\)/);
    assert.deepEqual(
      (await readdir(backups)).filter((n) => n.startsWith("gen-")),
      [],
    );
  });
  it("dr archive --to a regular file: one line in the project's words, exit 6", async () => {
    const file = path.join(scratch.dir, "a-file");
    await writeFile(file, "x");
    const r = await f.cli(["dr", "archive", "--to", file, "--once"]);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stderr, `bernstein: --to ${file}: it is a file, not a folder\n`);
    assert.equal(await readFile(file, "utf8"), "x");
  });
});
