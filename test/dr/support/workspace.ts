/** A small but real workspace for DR tests: WAL through the WAL writer, audit chain, files with modes. */
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { AuditLog } from "../../../src/audit/log.js";
import { initWorkspace, Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import { walkWorkspace } from "../../../src/dr/walk.js";
import { sha } from "./craft.js";
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { envFor, runCli, scratchDir } from "../../helpers.js";

export async function makeSmallWorkspace(
  dir: string,
  opts: { entries?: number; bigBytes?: number } = {},
): Promise<{ ws: Workspace; keyFile: string }> {
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  const keyFile = path.join(dir, "key", "audit.key");
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  await writeFile(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 });
  const w = await WalWriter.open(ws, "run-test");
  for (let i = 0; i < (opts.entries ?? 20); i++) {
    await w.append({
      decision_type: "task_claimed",
      inputs: { task_id: `T-${i}`, attempt: 1 },
      committed: i % 2 === 0,
    });
  }
  await w.close();
  const log = await AuditLog.open(ws, Buffer.from((await readFile(keyFile, "utf8")).trim(), "ascii"));
  for (let i = 0; i < 5; i++) {
    await log.append({
      event_type: "task.transition",
      actor: "test",
      resource_type: "task",
      resource_id: `T-${i}`,
      details: { n: i },
    });
  }
  await writeFile(
    ws.p("backlog", "open", "T-1-login.md"),
    '---\nid: T-1\ntitle: fix login\ncommand: "true"\n---\nfix login\n',
  );
  await writeFile(ws.p("backlog", "claimed", "T-2.md"), "claimed task\n");
  await writeFile(ws.p("backlog", "failed", "T-3.md"), "failed task\n");
  await writeFile(ws.p("config", "secret.yaml"), "token: x\n", { mode: 0o600 });
  await chmod(ws.p("config", "secret.yaml"), 0o600);
  await writeFile(ws.p("docs", "run.sh"), "#!/bin/sh\necho hi\n");
  await chmod(ws.p("docs", "run.sh"), 0o755);
  await writeFile(ws.p("docs", "ünïcode ✓.md"), "unicode name\n");
  await mkdir(ws.p("runs", "r1", "deep", "er"), { recursive: true });
  await writeFile(ws.p("runs", "r1", "deep", "er", "x.json"), "{}\n");
  await writeFile(ws.p("runs", "long-" + "n".repeat(120) + ".txt"), "long name\n");
  await writeFile(ws.p("caching", "blob.bin"), randomBytes(opts.bigBytes ?? 50_000));
  await writeFile(ws.p("runtime", "bernstein.pid.log"), "excluded\n");
  await writeFile(ws.p("logs", "x.log"), "excluded\n");
  await mkdir(ws.p("runtime", "heartbeats"), { recursive: true });
  await writeFile(ws.p("runtime", "heartbeats", "a.json"), "{}\n");
  return { ws, keyFile };
}

/** path → {sha, mode} of every file a backup includes. */
export function snapshotTree(root: string): Map<string, { sha: string; mode: number }> {
  const out = new Map<string, { sha: string; mode: number }>();
  for (const f of walkWorkspace(root).files) {
    out.set(f.rel, { sha: sha(readFileSync(f.abs)), mode: f.mode });
  }
  return out;
}

/**
 * The audit file (relative to `root`) whose last line is the `dr.restore` event a restore of a
 * catalogue backup appended, and its text before that line: what the archive carried of it.
 */
export function restoreEventFile(root: string): { rel: string; carried: string } {
  const files = [...snapshotTree(root).keys()].filter((k) => /^audit\/[^/]+\.jsonl$/.test(k)).sort();
  const rel = files.at(-1);
  assert.ok(rel, `no audit file in ${root}`);
  const lines = readFileSync(path.join(root, rel), "utf8").split("\n").filter(Boolean);
  assert.equal(JSON.parse(lines.at(-1)!).event_type, "dr.restore", `${rel}: last line`);
  return {
    rel,
    carried: lines
      .slice(0, -1)
      .map((l) => `${l}\n`)
      .join(""),
  };
}

/**
 * A scratch folder, removed after the test, holding a small workspace (`w/`) and a plain backup
 * of it made by `dr backup` (`b.tar.gz`), with the CLI's environment for that folder.
 */
export async function workspaceWithBackup(t: TestContext, prefix: string) {
  const { dir, cleanup } = await scratchDir(prefix);
  t.after(cleanup);
  const env = envFor(dir);
  const { ws } = await makeSmallWorkspace(path.join(dir, "w"));
  const backup = path.join(dir, "b.tar.gz");
  const made = await runCli(["--sdd", ws.root, "dr", "backup", "--to", backup], { env });
  assert.equal(made.code, 0, made.stderr);
  return { dir, env, ws, backup };
}

/** manifest.json of a plain archive (tar's own reader: what the Python original reads too). */
export function manifestOf(archive: string): Record<string, unknown> {
  return JSON.parse(execFileSync("tar", ["-xzOf", archive, "manifest.json"], { encoding: "utf8" })) as Record<
    string,
    unknown
  >;
}

/** A workspace that ran one task (its WAL closed, its audit log signed), and the CLI pointed at it. */
export async function ranOneTask(dir: string) {
  const env = envFor(dir);
  const sdd = path.join(dir, "ws", ".sdd");
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { env });
  assert.equal((await cli("init")).code, 0);
  assert.equal((await cli("task", "add", "t1", "--command", "true")).code, 0);
  assert.equal((await cli("start", "--until-idle")).code, 0);
  const walDir = path.join(sdd, "runtime", "wal");
  const name = readdirSync(walDir).find((n) => n.endsWith(".wal.jsonl"))!;
  return { env, sdd, cli, walFile: path.join(walDir, name), runId: name.slice(0, -".wal.jsonl".length) };
}
