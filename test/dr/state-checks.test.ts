/**
 * `dr backup`, `dr restore` and `dr restore --dry-run` say what `dr verify` fails in the state
 * an archive holds, beyond a broken chain in the middle (backup-wal-break.test.ts): a WAL that
 * ends before its closed marker (a rollback), a WAL chain broken in an archive that records no
 * checks (the Python reference's), an audit chain whose line was altered. One warning line each,
 * naming run and seq or file and line, in `--json` too; the backup records what it found in its
 * manifest (`state_checks`) and is taken all the same, and the restore too.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { FIXTURES, envFor, runCli, scratchDir } from "../helpers.js";
import { manifestOf, ranOneTask } from "./support/workspace.js";

const warningsOf = (stderr: string, re: RegExp): string[] =>
  stderr.split("\n").filter((l) => l.startsWith("warning: ") && re.test(l));

test("a closed run that lost its last entry: backup, restore and its dry run warn of the rollback", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-state-checks-rb-");
  t.after(cleanup);
  const { env, cli, walFile, runId } = await ranOneTask(dir);
  const intact = path.join(dir, "intact.tar.gz");
  const clean = await cli("dr", "backup", "--to", intact);
  assert.equal(clean.code, 0, clean.stderr);
  assert.deepEqual(warningsOf(clean.stderr, /rolled back|audit chain/), []);
  const checks = manifestOf(intact).state_checks as { wal_rollbacks: unknown[]; audit: { status: string } };
  assert.deepEqual(checks.wal_rollbacks, []);
  assert.equal(checks.audit.status, "ok", "the workspace's key checks its audit chain");

  const lines = readFileSync(walFile, "utf8").split("\n");
  const lastSeq = lines.length - 2;
  writeFileSync(walFile, lines.slice(0, -2).join("\n") + "\n");
  const want = new RegExp(
    `^warning: wal run ${runId}: rolled back .*its closed marker records seq ${lastSeq}, but the WAL ends at seq ${lastSeq - 1}`,
  );

  const archive = path.join(dir, "rb.tar.gz");
  const backup = await cli("--json", "dr", "backup", "--to", archive);
  assert.equal(backup.code, 0, backup.stderr);
  // One line a record that names the lost entry: the closed marker, and the intact backup's record.
  assert.equal(warningsOf(backup.stderr, /rolled back/).length, 2, backup.stderr);
  assert.match(warningsOf(backup.stderr, /rolled back/)[0]!, want);
  assert.ok(
    (JSON.parse(backup.stdout) as { warnings: string[] }).warnings.some((w) => /rolled back/.test(w)),
  );
  const recorded = manifestOf(archive).state_checks as {
    wal_rollbacks: { run_id: string; expected_seq: number }[];
  };
  assert.deepEqual(
    recorded.wal_rollbacks.map((r) => [r.run_id, r.expected_seq]),
    [
      [runId, lastSeq],
      [runId, lastSeq],
    ],
  );

  const dry = await runCli(
    ["--json", "--sdd", path.join(dir, "dry", ".sdd"), "dr", "restore", "--dry-run", "--from", archive],
    { env },
  );
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(warningsOf(dry.stderr, /rolled back/)[0] ?? "", want);
  assert.ok((JSON.parse(dry.stdout) as { warnings: string[] }).warnings.some((w) => /rolled back/.test(w)));

  // A catalogue's deep check opens the archive: intact as written, and it says what it holds.
  const cat = path.join(dir, "cat");
  assert.equal((await cli("dr", "backup", "--to-dir", cat)).code, 0);
  const list = await cli("--json", "dr", "list", "--at", cat, "--check", "--deep");
  assert.equal(list.code, 0, list.stderr);
  const content = (JSON.parse(list.stdout) as { content: { status: string; detail: string }[] }).content;
  assert.equal(content[0]?.status, "ok");
  assert.match(
    content[0]!.detail,
    new RegExp(`2 state warning\\(s\\), first: wal run ${runId}: rolled back`),
  );

  const restored = path.join(dir, "restored", ".sdd");
  const restore = await runCli(["--sdd", restored, "dr", "restore", "--from", archive], { env });
  assert.equal(restore.code, 0, restore.stderr);
  assert.equal(warningsOf(restore.stderr, /rolled back/).length, 2, restore.stderr);
  assert.match(warningsOf(restore.stderr, /rolled back/)[0]!, want);
  assert.equal(
    (await runCli(["--sdd", restored, "start", "--until-idle"], { env })).code,
    9,
    "what it warned of",
  );
});

test("an archive that records no checks (the Python reference's) is checked as it is restored", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-state-checks-py-");
  t.after(cleanup);
  const env = envFor(dir);
  const x = path.join(dir, "x");
  mkdirSync(x);
  execFileSync("tar", ["-xzf", path.join(FIXTURES, "python-reference", "backup-plain.tar.gz"), "-C", x]);
  const wal = path.join(x, "runtime", "wal", "run-golden.wal.jsonl");
  const lines = readFileSync(wal, "utf8").split("\n");
  lines.splice(2, 1); // the entry of seq 2 lost
  writeFileSync(wal, lines.join("\n"));
  const archive = path.join(dir, "py.tar.gz");
  const rest = readdirSync(x).filter((n) => n !== "manifest.json");
  execFileSync("tar", ["-czf", archive, "-C", x, "manifest.json", ...rest]);
  const want = /^warning: wal run run-golden: chain broken at seq 3 \(line 3: seq_gap\) in this archive/;

  const dry = await runCli(
    ["--json", "--sdd", path.join(dir, "dry", ".sdd"), "dr", "restore", "--dry-run", "--from", archive],
    { env },
  );
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(warningsOf(dry.stderr, /chain broken/)[0] ?? "", want);
  assert.ok(
    (JSON.parse(dry.stdout) as { warnings: string[] }).warnings.some((w) => /chain broken at seq 3/.test(w)),
  );

  const restored = path.join(dir, "restored", ".sdd");
  const restore = await runCli(["--json", "--sdd", restored, "dr", "restore", "--from", archive], { env });
  assert.equal(restore.code, 0, restore.stderr);
  assert.equal(warningsOf(restore.stderr, /chain broken/).length, 1, restore.stderr);
  assert.match(warningsOf(restore.stderr, /chain broken/)[0]!, want);
  assert.ok(
    (JSON.parse(restore.stdout) as { warnings: string[] }).warnings.some((w) =>
      /chain broken at seq 3/.test(w),
    ),
  );
  assert.equal(
    (await runCli(["--sdd", restored, "start", "--until-idle"], { env })).code,
    9,
    "what it warned of",
  );
});

test("an altered audit line: the backup names its file and line, and so does the restore", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-state-checks-audit-");
  t.after(cleanup);
  const { env, sdd, cli } = await ranOneTask(dir);
  const auditDir = path.join(sdd, "audit");
  const day = readdirSync(auditDir).find((n) => n.endsWith(".jsonl"))!;
  const file = path.join(auditDir, day);
  const lines = readFileSync(file, "utf8").split("\n");
  assert.ok(lines.length > 2, "the run wrote audit events");
  lines[1] = lines[1]!.replace('"actor": "orchestrator"', '"actor": "orchestratoR"');
  writeFileSync(file, lines.join("\n"));
  const want = new RegExp(`^warning: audit chain broken .*first at audit/${day}:2: HMAC mismatch`);

  const archive = path.join(dir, "audit.tar.gz");
  const backup = await cli("dr", "backup", "--to", archive);
  assert.equal(backup.code, 0, backup.stderr);
  assert.match(warningsOf(backup.stderr, /audit chain/)[0] ?? "", want);
  assert.equal((manifestOf(archive).state_checks as { audit: { status: string } }).audit.status, "failed");

  const restore = await runCli(
    ["--sdd", path.join(dir, "restored", ".sdd"), "dr", "restore", "--from", archive],
    { env },
  );
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(warningsOf(restore.stderr, /audit chain/)[0] ?? "", want);
  const verify = await runCli(
    ["dr", "verify", "--from", archive, "--key-file", env.BERNSTEIN_AUDIT_KEY_PATH!],
    { env },
  );
  assert.equal(verify.code, 1, "what it warned of");
});
