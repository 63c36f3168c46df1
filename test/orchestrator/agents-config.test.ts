/**
 * What a fresh `init` says about agents, and `task add` refusing a task that no configured agent
 * can run (refused when added, not at `start` with "agent shell needs a command").
 */
import assert from "node:assert/strict";
import { readFile, readdir, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import YAML from "yaml";
import { BUILTIN_AGENTS, loadAgentsConfig } from "../../src/orchestrator/agents.js";
import { Workspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

test("init writes a commented agents.yaml: it loads as the built-ins, its comments are the built-in templates, an edited one is kept", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const init = await runCli(["--sdd", sdd, "init", "--json"]);
    assert.equal(init.code, 0, init.stderr);
    const file = path.join(sdd, "config", "agents.yaml");
    assert.equal(JSON.parse(init.stdout).agents_file, file);
    const text = await readFile(file, "utf8");
    const cfg = await loadAgentsConfig(new Workspace(sdd));
    assert.equal(cfg.defaultAgent, "shell");
    assert.deepEqual(cfg.agents, BUILTIN_AGENTS);
    const uncommented = YAML.parse(text.replace(/^ {2}# /gm, "  ")) as { agents: Record<string, unknown> };
    assert.deepEqual(uncommented.agents, BUILTIN_AGENTS, "the comments are exactly the built-in templates");

    await writeFile(file, "default: shell\n");
    const again = await runCli(["--sdd", sdd, "init", "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).agents_file_written, false);
    assert.equal(await readFile(file, "utf8"), "default: shell\n");
  } finally {
    await cleanup();
  }
});

test("task add refuses a task no configured agent can run (exit 2, saying what to configure); a runnable one runs", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const cli = (...a: string[]) =>
      runCli(["--sdd", sdd, ...a], { cwd: dir, env: { PATH: "/usr/bin:/bin" } });
    assert.equal((await cli("init")).code, 0);
    const open = () => readdir(path.join(sdd, "backlog", "open"));
    const refused = async (args: string[], re: RegExp) => {
      const r = await cli("task", "add", "t", ...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.deepEqual(await open(), [], "nothing written");
    };
    // A fresh init: the default agent is shell, which cannot run a prompt.
    await refused(
      ["--prompt", "fix the bug"],
      /--agent NAME for a coding-agent CLI \(claude, codex, gemini, aider\), or set "default: NAME" in .*config\/agents\.yaml/,
    );
    await refused(["--prompt", "p", "--agent", "shell"], /agent shell runs a --command/);
    await refused(
      ["--prompt", "p", "--agent", "nosuch"],
      /unknown agent nosuch .*define it under "agents:" in .*agents\.yaml/,
    );
    await refused(
      ["--command", "true", "--agent", "claude"],
      /agent claude runs a prompt and the task has none: give --prompt/,
    );

    // A built-in template whose binary is missing is accepted with a warning (it may be installed before start).
    const claude = await cli("task", "add", "t", "--prompt", "p", "--agent", "claude", "--id", "c1");
    assert.equal(claude.code, 0, claude.stderr);
    assert.match(claude.stderr, /warning: claude is not on PATH: task c1 fails unless it is installed/);
    await unlink(path.join(sdd, "backlog", "open", "c1.md")); // not run below: claude is not here

    // Configured as the file says: a default template agent runs --prompt tasks without --agent.
    await writeFile(
      path.join(sdd, "config", "agents.yaml"),
      "default: echoer\nagents:\n  echoer:\n    adapter: template\n    command: [sh, -c, 'printf %s \"$0\" > said.txt', '{prompt}']\n",
    );
    const ok = await cli("task", "add", "t", "--prompt", "hello", "--id", "p1");
    assert.equal(ok.code, 0, ok.stderr);
    const run = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await readFile(path.join(dir, "said.txt"), "utf8"), "hello");
  } finally {
    await cleanup();
  }
});
