/**
 * The workspace's own record of its backups (`runs/backups.jsonl`) and what `dr status` and the
 * runbook build from it: the backup a workspace was restored from, a passing `dr verify`.
 */
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { DEFAULT_THRESHOLDS } from "../../src/replication/health.js";
import { writeRunbook } from "../../src/replication/failover.js";
import { Workspace } from "../../src/workspace/layout.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

interface StatusJson {
  last_backup: { location: string; verified: boolean } | null;
}

test("a restored workspace's last good backup is the one it was restored from", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-row-");
  t.after(cleanup);
  const env = envFor(dir);
  const run = async (sdd: string, args: string[]) => {
    const r = await runCli([...args, "--sdd", sdd], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const ws = path.join(dir, "ws", ".sdd");
  await run(ws, ["init"]);
  await run(ws, ["task", "add", "first", "--command", "true"]);
  await run(ws, ["dr", "backup", "--to-dir", path.join(dir, "old")]);
  await run(ws, ["task", "add", "second", "--command", "true"]);
  const cat = path.join(dir, "cat");
  await run(ws, ["dr", "backup", "--to-dir", cat]);
  const name = (await readdir(cat)).find((n) => n.endsWith(".tar.gz"))!;
  const rowsOf = async (sdd: string) =>
    (await readFile(path.join(sdd, "runs", "backups.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  // The row `dr backup` appended in the workspace it was taken of.
  const written = (await rowsOf(ws)).at(-1)!;

  const restored = path.join(dir, "new", ".sdd");
  await run(restored, ["dr", "restore", "--latest", "--at", cat]);
  const status = JSON.parse(await run(restored, ["dr", "status", "--json"])) as StatusJson;
  assert.deepEqual(status.last_backup && [status.last_backup.location, status.last_backup.verified], [
    path.join(cat, name),
    true,
  ]);
  // The same backup as its original row says, read back in full by the restore.
  assert.deepEqual((await rowsOf(restored)).at(-1), { ...written, verified: true });

  const runbook = (JSON.parse(await run(restored, ["dr", "runbook", "--json"])) as { runbook: string })
    .runbook;
  const text = await readFile(runbook, "utf8");
  assert.match(text, new RegExp(`dr restore --from ${path.join(cat, name)} `));
  // Its checklist's fresh backup goes where the last one went, and runs as written.
  const fresh = /`(bernstein dr backup [^`]*)`/.exec(text)?.[1];
  assert.equal(fresh, `bernstein dr backup --to-dir ${cat}`);
  await run(restored, fresh.split(" ").slice(1));
  assert.equal((await readdir(cat)).filter((n) => n.endsWith(".tar.gz")).length, 2);
});

test("a passing dr verify of a listed backup makes it verified for dr status", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-row-");
  t.after(cleanup);
  const env = envFor(dir);
  const ws = path.join(dir, "ws", ".sdd");
  const run = async (args: string[], cwd?: string) => {
    const r = await runCli([...args, "--sdd", ws], { env, cwd });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const lastBackup = async () =>
    (JSON.parse(await run(["dr", "status", "--json"])) as StatusJson).last_backup;
  await run(["init"]);
  await run(["dr", "backup", "--to", path.join(dir, "x.tar.gz")]);
  assert.equal((await lastBackup())?.verified, false);
  // Named relative to where verify runs: the row names it absolute.
  const verify = JSON.parse(await run(["dr", "verify", "--from", "./x.tar.gz", "--json"], dir)) as {
    backup_log_verified: boolean;
  };
  assert.equal(verify.backup_log_verified, true);
  assert.equal((await lastBackup())?.verified, true);
  assert.match(await run(["dr", "status"]), /^Backup: +\S*x\.tar\.gz \([^;]* old\)$/m);
  // Verified once is enough: a second pass appends nothing.
  await run(["dr", "verify", "--from", path.join(dir, "x.tar.gz")]);
  const rows = (await readFile(path.join(ws, "runs", "backups.jsonl"), "utf8")).trim().split("\n");
  assert.equal(rows.length, 2);
});

test("dr status counts the WAL entries after the last backup's position", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-row-");
  t.after(cleanup);
  const env = envFor(dir);
  const ws = path.join(dir, "ws", ".sdd");
  const run = async (args: string[]) => {
    const r = await runCli([...args, "--sdd", ws], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const rpo = async () =>
    (
      JSON.parse(await run(["dr", "status", "--json"])) as {
        rpo_estimate: { entries: number | null; basis: string };
      }
    ).rpo_estimate;
  await run(["init"]);
  await run(["task", "add", "first", "--command", "true"]);
  await run(["start", "--until-idle", "--poll", "20"]);
  await run(["dr", "backup", "--to", path.join(dir, "x.tar.gz")]);
  const held = await rpo();
  assert.deepEqual([held.entries, held.basis], [0, "last backup"]);
  assert.match(await run(["dr", "status"]), /^RPO: +0 entries, /m);
  await run(["task", "add", "second", "--command", "true"]);
  await run(["start", "--until-idle", "--poll", "20"]);
  const after = (await rpo()).entries;
  assert.ok(after !== null && after > 0, `entries after the backup: ${after}`);
});

test("the runbook's restore of an encrypted backup runs as written, its password file filled in", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-row-");
  t.after(cleanup);
  const env = envFor(dir);
  const ws = path.join(dir, "ws", ".sdd");
  const pw = path.join(dir, "pw");
  await writeFile(pw, "right horse battery\n", { mode: 0o600 });
  const run = async (args: string[]) => {
    const r = await runCli([...args, "--sdd", ws], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  await run(["init"]);
  await run(["dr", "backup", "--to", path.join(dir, "x.tar.gz"), "--encrypt", "--password-file", pw]);
  const runbook = (JSON.parse(await run(["dr", "runbook", "--json"])) as { runbook: string }).runbook;
  const line = (await readFile(runbook, "utf8"))
    .split("\n")
    .find((l) => l.startsWith("bernstein dr restore"))!;
  assert.match(line, /--password-file <PASSWORD_FILE>/);
  const target = path.join(dir, "new", ".sdd");
  const args = line
    .split(" ")
    .slice(1)
    .map((w) => (w === "<PASSWORD_FILE>" ? pw : w === "<NEW_HOST_SDD>" ? target : w));
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, `${line}: ${r.stderr}`);
});

test("two runbooks of the same second are two files", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-backup-row-");
  t.after(cleanup);
  const ws = new Workspace(path.join(dir, ".sdd"));
  const input = {
    perspective: "leader" as const,
    policy: null,
    thresholds: DEFAULT_THRESHOLDS,
    nodes: [],
    evaluation: { decision: "NO_ACTION" as const, reasons: [] },
  };
  const now = new Date("2026-01-02T03:04:05.100Z");
  const first = await writeRunbook(ws, { ...input, writtenBy: "first" }, now);
  const second = await writeRunbook(ws, { ...input, writtenBy: "second" }, new Date(now.getTime() + 500));
  assert.notEqual(first, second);
  assert.match(await readFile(first, "utf8"), /written by first/);
  assert.match(await readFile(second, "utf8"), /written by second/);
});
