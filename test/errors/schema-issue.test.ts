import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import { loadAgentsConfig } from "../../src/orchestrator/agents.js";
import { parseTaskText } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

test("a task file's issue is the key and what was wrong, without zod's category", () => {
  const cases: [string, RegExp][] = [
    ["id: T-1\ntitle: x\npriority: high\n", /: priority: expected number, received string$/],
    ["title: x\n", /: id: missing$/],
    ["id: '-x'\ntitle: x\n", /: id: must be 1-128 of \[A-Za-z0-9._-\], starting alphanumeric$/],
    ["id: T-1\ntitle: ''\n", /: title: must not be empty$/],
    ["id: T-1\ntitle: x\ndepends_on: T-0\n", /: depends_on: expected array, received string$/],
  ];
  for (const [front, expected] of cases)
    assert.throws(() => parseTaskText("/b/t.md", `---\n${front}---\n`), expected, front);
  // Python's extra fields are kept, not refused.
  assert.equal(parseTaskText("/b/t.md", "---\nid: T-1\ntitle: x\nscope: small\n---\n").id, "T-1");
});

test("agents.yaml is strict: a misspelt key is named with the keys known there (of the agent's adapter)", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-agents-issue-");
  try {
    const ws = new Workspace(path.join(dir, ".sdd"));
    await mkdir(ws.configDir, { recursive: true });
    const file = path.join(ws.configDir, "agents.yaml");
    const cases: [string, string][] = [
      ["default: shell\nagentz: {}\n", "agentz: unknown key (known here: default, agents)"],
      // The misspelt key, not the "command: missing" it causes.
      [
        "agents:\n  a: {adapter: template, comand: [x]}\n",
        "agents.a.comand: unknown key (known here: adapter, command, env)",
      ],
      [
        "agents:\n  a: {adapter: shell, command: [x]}\n",
        "agents.a.command: unknown key (known here: adapter, env)",
      ],
      ["agents:\n  a: {adapter: nope}\n", 'agents.a.adapter: expected one of "shell"|"template"'],
      ["agents:\n  a: {adapter: template}\n", "agents.a.command: missing"],
      ["agents:\n  a: {adapter: shell, env: {A: 1}}\n", "agents.a.env.A: expected string, received number"],
      ["default: 3\n", "default: expected string, received number"],
      ["- a\n", "expected a mapping (default, agents)"],
    ];
    for (const [text, expected] of cases) {
      await writeFile(file, text);
      await assert.rejects(loadAgentsConfig(ws), (err: unknown) => {
        assert.ok(err instanceof UserError, String(err));
        assert.equal(err.message, `${file}: ${expected}`);
        return true;
      });
    }
    await writeFile(file, "default: shell\nagents:\n  a: {adapter: template, command: [x], env: {A: b}}\n");
    assert.deepEqual((await loadAgentsConfig(ws)).agents.a, {
      adapter: "template",
      command: ["x"],
      env: { A: "b" },
    });
  } finally {
    await cleanup();
  }
});
