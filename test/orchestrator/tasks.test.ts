import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { findCycle, parseTaskText, scanBacklog } from "../../src/orchestrator/tasks.js";
import { Workspace } from "../../src/workspace/layout.js";
import { MAX_DELAY_S } from "../../src/workspace/timer.js";
import { runCli, runMain, scratchDir } from "../helpers.js";

test("task files parse with defaults; Python-original files parse too", () => {
  const spec = parseTaskText(
    "x.md",
    "---\nid: T-001\ntitle: Fix login\nrole: backend\npriority: 1\n---\nBody\n",
  );
  assert.deepEqual(spec, {
    id: "T-001",
    title: "Fix login",
    role: "backend",
    priority: 1,
    depends_on: [],
    command: null,
    prompt: null,
    agent: null,
    max_retries: 0,
    timeout_s: 1800,
    body: "Body\n",
  });
  assert.equal(parseTaskText("old.yaml", "id: T-000b\ntitle: old\n").id, "T-000b");
  assert.equal(parseTaskText("n.md", "---\nid: 7\ntitle: numeric id\n---\n").id, "7");
});

test("malformed task files are reported with their path", () => {
  assert.throws(() => parseTaskText("/b/bad.md", "---\nid: x\n: : :\n---\n"), /\/b\/bad\.md: bad YAML/);
  assert.throws(() => parseTaskText("/b/nt.md", "---\nid: x\n---\n"), /\/b\/nt\.md: title: missing/);
  assert.throws(() => parseTaskText("/b/nofm.md", "just text\n"), /no YAML front matter/);
  assert.throws(
    () => parseTaskText("/b/open.md", "---\nid: [broken\n"),
    /^TaskParseError: \/b\/open\.md: front matter not closed \(no line `---` after the opening one\)$/,
  );
  assert.throws(() => parseTaskText("/b/list.md", "---\n- a\n---\n"), /not a YAML mapping/);
});

test("a task file's timeout_s is held to task add --timeout's bound: refused beyond it, never cut", () => {
  const withTimeout = (t: string): string =>
    `---\nid: T-1\ntitle: t\ncommand: "true"\ntimeout_s: ${t}\n---\n`;
  assert.equal(parseTaskText("/b/max.md", withTimeout(String(MAX_DELAY_S))).timeout_s, MAX_DELAY_S);
  assert.equal(parseTaskText("/b/frac.md", withTimeout("0.5")).timeout_s, 0.5);
  for (const beyond of [String(MAX_DELAY_S + 1), "1e300"])
    assert.throws(
      () => parseTaskText("/b/long.md", withTimeout(beyond)),
      new RegExp(`^TaskParseError: /b/long\\.md: timeout_s: must be at most ${MAX_DELAY_S} \\(seconds\\)$`),
    );
  for (const bad of ["-5", "0", ".nan", ".inf", "-.inf"])
    assert.throws(
      () => parseTaskText("/b/bad.md", withTimeout(bad)),
      /^TaskParseError: \/b\/bad\.md: timeout_s: /,
    );
});

test("findCycle finds a cycle and only a cycle", () => {
  assert.equal(
    findCycle(
      new Map([
        ["a", []],
        ["b", ["a"]],
        ["c", ["a", "b"]],
      ]),
    ),
    null,
  );
  assert.deepEqual(
    findCycle(
      new Map([
        ["a", ["c"]],
        ["b", ["a"]],
        ["c", ["b"]],
      ]),
    ),
    ["a", "c", "b", "a"],
  );
  assert.deepEqual(findCycle(new Map([["s", ["s"]]])), ["s", "s"]);
});

test("task add / list: ids, dependencies, cycles, malformed files left in place", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const cli = (...a: string[]) => runCli(["--sdd", sdd, ...a]);
    // In this process: the repeat runs of behaviours a real process run (cli) of this file checks.
    const inProc = (...a: string[]) => runMain(["--sdd", sdd, ...a]);
    assert.equal((await inProc("init")).code, 0);
    const a = await cli("task", "add", "first", "--command", "true", "--json");
    assert.equal(a.code, 0, a.stderr);
    const idA = JSON.parse(a.stdout).id as string;
    assert.match(idA, /^T-[0-9a-z]+$/);
    const b = await cli(
      "task",
      "add",
      "second",
      "--command",
      "true",
      "--id",
      "b",
      "--depends-on",
      idA,
      "--priority",
      "1",
    );
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout.trim(), "b");

    const unknown = await cli("task", "add", "x", "--command", "true", "--depends-on", "nope");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown dependency nope/);
    const self = await inProc("task", "add", "x", "--command", "true", "--id", "s", "--depends-on", "s");
    assert.equal(self.code, 2);
    assert.match(self.stderr, /dependency cycle s -> s/);
    const dup = await inProc("task", "add", "x", "--command", "true", "--id", "b");
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /already exists/);
    const both = await inProc("task", "add", "x", "--command", "true", "--prompt", "p");
    assert.equal(both.code, 2);
    const badPrio = await inProc("task", "add", "x", "--command", "true", "--priority", "high");
    assert.equal(badPrio.code, 2);

    // A hand-written file that closes a cycle through the new task is rejected too.
    await writeFile(path.join(sdd, "backlog/open/h.md"), "---\nid: h\ntitle: hand\ndepends_on: [c]\n---\n");
    const cyc = await inProc("task", "add", "c", "--command", "true", "--id", "c", "--depends-on", "h");
    assert.equal(cyc.code, 2);
    assert.match(cyc.stderr, /dependency cycle/);

    const badFile = path.join(sdd, "backlog/open/bad.md");
    await writeFile(badFile, "---\nid: bad\ntitle: [unclosed\n---\n");
    const list = await cli("task", "list", "--json");
    assert.equal(list.code, 0, list.stderr);
    const doc = JSON.parse(list.stdout);
    assert.deepEqual(
      doc.tasks.map((t: { id: string }) => t.id),
      [idA, "b", "h"].sort(),
    );
    assert.equal(doc.malformed.length, 1);
    assert.equal(doc.malformed[0].file, badFile);
    assert.match(list.stderr, /bad\.md/);
    assert.equal(await readFile(badFile, "utf8"), "---\nid: bad\ntitle: [unclosed\n---\n");
    const onlyDone = await inProc("task", "list", "--state", "done", "--json");
    assert.deepEqual(JSON.parse(onlyDone.stdout).tasks, []);
    assert.equal((await cli("task", "list", "--state", "nope")).code, 2);

    const scan = await scanBacklog(new Workspace(sdd));
    assert.equal(scan.tasks.find((t) => t.spec.id === "b")!.spec.depends_on[0], idA);
  } finally {
    await cleanup();
  }
});

test("task add --agent --prompt: the task runs that agents.yaml template, prompt passed as one argument", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const cli = (...a: string[]) => runCli(["--sdd", sdd, ...a]);
    // In this process: the repeat runs of behaviours a real process run (cli) of this file checks.
    const inProc = (...a: string[]) => runMain(["--sdd", sdd, ...a]);
    assert.equal((await inProc("init")).code, 0);
    await writeFile(
      path.join(sdd, "config/agents.yaml"),
      "agents:\n  echoer:\n    adapter: template\n" +
        "    command: [sh, -c, 'printf \"%s|%s\" \"$0\" \"$1\" > said-$1.txt', '{prompt}', '{task_id}']\n",
    );
    const add = await cli(
      "task",
      "add",
      "say it",
      "--agent",
      "echoer",
      "--prompt",
      'it\'s $HOME; "quoted"',
      "--id",
      "e1",
    );
    assert.equal(add.code, 0, add.stderr);
    const listed = JSON.parse((await inProc("task", "list", "--json")).stdout);
    assert.equal(listed.tasks[0].agent, "echoer");
    const run = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await readFile(path.join(dir, "said-e1.txt"), "utf8"), `it's $HOME; "quoted"|e1`);
  } finally {
    await cleanup();
  }
});

test("a title with a line break: task add refuses it; a task file's is listed on one line, JSON keeps it", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const cli = (...a: string[]) => runCli(["--sdd", sdd, ...a]);
    // In this process: the repeat runs of behaviours a real process run (cli) of this file checks.
    const inProc = (...a: string[]) => runMain(["--sdd", sdd, ...a]);
    assert.equal((await inProc("init")).code, 0);
    const refused = await cli("task", "add", "fix\nlogin", "--command", "true", "--id", "nl");
    assert.equal(refused.code, 2);
    assert.equal(
      refused.stderr,
      "bernstein: task add: the title must be one line of text; it holds a line break\n",
    );
    assert.match(
      (await inProc("task", "add", "bell\u0007", "--command", "true")).stderr,
      /it holds a control character \(U\+0007\)/,
    );
    assert.deepEqual(await readdir(path.join(sdd, "backlog/open")), [], "nothing written");

    // A hand-written file (YAML block scalar) may hold one.
    await writeFile(
      path.join(sdd, "backlog/open/multi.md"),
      '---\nid: multi\ntitle: |-\n  fix\n  login\ncommand: "true"\n---\n',
    );
    await writeFile(
      path.join(sdd, "backlog/open/plain.md"),
      "---\nid: plain\ntitle: plain\ncommand: x\n---\n",
    );
    const list = await cli("task", "list");
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      list.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.replace(/ +/g, " ")),
      ["open multi p2 fix\\nlogin", "open plain p2 plain"],
      "one line per task, the line break shown as \\n",
    );
    const json = JSON.parse((await inProc("task", "list", "--json")).stdout);
    assert.equal(json.tasks[0].title, "fix\nlogin");
  } finally {
    await cleanup();
  }
});

test("task commands on a folder that is not a workspace exit 2", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const r = await runCli(["--sdd", path.join(dir, ".sdd"), "task", "list"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bernstein init/);
  } finally {
    await cleanup();
  }
});
