/**
 * `status` is what an operator runs most: it must not pay for age's curves and post-quantum code,
 * which the orchestrator's modules reach (the archiver seals segments) but a status never uses;
 * nor for the engine `start` runs, nor for the task files' parsing (zod, the YAML parser). The
 * same for `dr status`, which sits beside `dr promote`. And `start` without --archive-to or
 * --replication-listen does not carry the archiver, the replication leader or its server. A status
 * starts git only to say why an attempt waits to merge.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, moduleLoadLogger, runCli, scratchDir } from "../helpers.js";
import { makeRepo } from "./support/git-repo.js";

/** The modules `args` loads in a fresh workspace (file URLs); the command must exit 0. */
async function modulesOf(args: string[]): Promise<string[]> {
  const { dir, cleanup } = await scratchDir();
  try {
    assert.equal((await runCli(["init", "--json"], { cwd: dir, env: envFor(dir) })).code, 0);
    const log = path.join(dir, "modules.log");
    const env = { ...envFor(dir), NODE_OPTIONS: await moduleLoadLogger(dir, log) };
    const r = await runCli(args, { cwd: dir, env });
    assert.equal(r.code, 0, r.stderr);
    return (await readFile(log, "utf8")).split("\n").filter(Boolean);
  } finally {
    await cleanup();
  }
}

/** The engine and the task parser: what `start` and `dr promote` need and a status does not. */
const engine = (u: string): boolean =>
  u.includes("/node_modules/zod/") ||
  u.endsWith("/src/vendor/zod.js") ||
  u.endsWith("/src/vendor/yaml.js") ||
  u.endsWith("/src/orchestrator/orchestrator.js") ||
  u.endsWith("/src/orchestrator/tasks.js") ||
  u.endsWith("/src/orchestrator/materialize.js");

/** The modules `args` loads that `unwanted` matches, once the hook is seen to log the command's own (`seen`). */
async function unwantedModules(
  args: string[],
  seen: string,
  unwanted: (u: string) => boolean,
): Promise<string[]> {
  const loaded = await modulesOf(args);
  assert.ok(
    loaded.some((u) => u.endsWith(seen)),
    "the hook saw the CLI's modules",
  );
  return loaded.filter(unwanted);
}

test("status loads neither the age library nor its curves, nor the engine or the task parser", async () => {
  const extra = await unwantedModules(
    ["status", "--json"],
    "/src/orchestrator/status.js",
    (u) =>
      u.includes("/node_modules/age-encryption/") ||
      u.includes("/node_modules/@noble/") ||
      u.endsWith("/src/vendor/age.js") ||
      engine(u),
  );
  assert.deepEqual(extra, []);
});

test("dr status loads neither the engine nor the task parser that dr promote needs", async () => {
  assert.deepEqual(
    await unwantedModules(["dr", "status", "--json"], "/src/replication/status.js", engine),
    [],
  );
});

test("start without --archive-to or --replication-listen loads neither the archiver nor the replication leader", async () => {
  const extra = await unwantedModules(
    ["start", "--until-idle", "--json"],
    "/src/orchestrator/orchestrator.js",
    (u) =>
      u.includes("/src/archive/") ||
      u.endsWith("/src/replication/leader.js") ||
      u.endsWith("/src/replication/server.js") ||
      u.endsWith("/src/replication/snapshot.js"),
  );
  assert.deepEqual(extra, []);
});

test("status in a git repository starts no git process when no attempt waits to merge", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const project = path.join(dir, "repo");
    await makeRepo(project);
    // A git first on PATH that notes each call, then runs the real one.
    const bin = path.join(dir, "bin");
    const calls = path.join(dir, "git-calls.log");
    await mkdir(bin);
    await writeFile(
      path.join(bin, "git"),
      `#!/bin/sh\necho "$*" >> ${JSON.stringify(calls)}\nPATH=${JSON.stringify(process.env.PATH ?? "")} exec git "$@"\n`,
    );
    await chmod(path.join(bin, "git"), 0o755);
    const env = { ...envFor(dir), PATH: `${bin}:${process.env.PATH ?? ""}` };
    assert.equal((await runCli(["init", "--json"], { cwd: project, env })).code, 0);
    const add = await runCli(["task", "add", "t", "--command", "true", "--worktree", "--json"], {
      cwd: project,
      env,
    });
    assert.equal(add.code, 0, add.stderr);
    assert.ok(existsSync(calls), "the fake git saw task add's repository check");
    const before = await readFile(calls, "utf8");
    const r = await runCli(["status", "--json"], { cwd: project, env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(calls, "utf8"), before, "status started git");
  } finally {
    await cleanup();
  }
});
