import assert from "node:assert/strict";
import { appendFile, chmod, readFile, readdir, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns } from "../../src/wal/reader.js";
import { closedMarkerPath } from "../../src/wal/recovery.js";
import { runCli, scratchDir, spawnCli, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("start on a folder that is not a workspace exits 2", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const r = await runCli(["--sdd", path.join(dir, "nope"), "start", "--until-idle"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no workspace at .*bernstein init/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  } finally {
    await cleanup();
  }
});

test("a malformed task file is reported with its path and left in place; the rest runs", async () => {
  const { sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-bad-");
  try {
    await addTask(ws, { id: "good", title: "good", command: "true" });
    const badYaml = path.join(sdd, "backlog/open/bad-yaml.md");
    const noTitle = path.join(sdd, "backlog/open/no-title.md");
    await writeFile(badYaml, "---\nid: x1\ntitle: [unclosed\n---\n");
    await writeFile(noTitle, "---\nid: x2\ncommand: true\n---\n");
    const r = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`malformed task file left in place: ${badYaml}: bad YAML`));
    assert.match(r.stderr, new RegExp(`${noTitle}: title: missing`));
    assert.equal(await readFile(badYaml, "utf8"), "---\nid: x1\ntitle: [unclosed\n---\n");
    assert.deepEqual(await readdir(path.join(sdd, "backlog/done")), ["good.md"]);
    const doctor = await cli("doctor", "--json");
    assert.equal(doctor.code, 1, "doctor fails on malformed backlog files");
    const check = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "backlog");
    assert.equal(check.ok, false);
    assert.match(check.detail, /bad-yaml\.md/);
  } finally {
    await cleanup();
  }
});

test("a damaged file of a task the WAL created gets one true message: its path and what is wrong in it", async () => {
  const { sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-bad-known-");
  try {
    await addTask(ws, { id: "a", title: "a", command: "true" });
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const file = path.join(sdd, "backlog/done/a.md");
    await writeFile(file, "---\nid: [broken\n");
    const doctor = await cli("doctor", "--json");
    assert.equal(doctor.code, 1);
    const checks: { name: string; verdict: string; detail: string }[] = JSON.parse(doctor.stdout).checks;
    const failed = checks.filter((c) => c.verdict === "fail");
    assert.deepEqual(
      failed.map((c) => c.name),
      ["backlog"],
      "the file is there: not a task without its file",
    );
    assert.equal(
      failed[0].detail,
      `1 malformed task file(s): ${file}: front matter not closed (no line \`---\` after the opening one)`,
    );
    const r = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stderr.split("\n").filter((l) => l.startsWith("warning:")),
      [
        `warning: malformed task file left in place: ${file}: front matter not closed (no line \`---\` after the opening one)`,
      ],
    );
    assert.equal(await readFile(file, "utf8"), "---\nid: [broken\n", "never written over");
  } finally {
    await cleanup();
  }
});

test("status counts a malformed file in open/ as no task and reports it, as start leaves it unscheduled", async () => {
  const { sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-bad-status-");
  try {
    await addTask(ws, { id: "good", title: "good", command: "true" });
    const bad = path.join(sdd, "backlog/open/bad-yaml.md");
    await writeFile(bad, "---\nid: x1\ntitle: [unclosed\n---\n");
    const r = await cli("status", "--json");
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.tasks.open, 1, "only the task that parses is open");
    assert.deepEqual(
      doc.malformed.map((m: { file: string; state: string }) => [m.file, m.state]),
      [[bad, "open"]],
    );
    assert.match(doc.malformed[0].error, /bad YAML/);
    const human = await cli("status");
    assert.match(human.stdout, /^tasks: open 1, /m);
    assert.match(human.stdout, /^malformed task files: 1 /m);

    // Once adopted, a task is the WAL's: `start` runs it whatever its file says later, so status counts it.
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    await writeFile(path.join(sdd, "backlog/done/good.md"), "garbled");
    const after = JSON.parse((await cli("status", "--json")).stdout);
    assert.equal(after.tasks.done, 1);
    assert.equal(after.tasks.open, 0);
    assert.equal(after.malformed.length, 1, "the never-adopted file is still reported");
  } finally {
    await cleanup();
  }
});

test("a task file every user may write is not taken (left in place, the reason and chmod o-w named); group-writable is", async () => {
  const { dir, sdd, ws, env, cli, cleanup } = await orchestratorWorkspace("bernstein-open-file-");
  try {
    await addTask(ws, { id: "good", title: "good", command: "true" });
    const task = (id: string) => `---\nid: ${id}\ntitle: ${id}\ncommand: "true"\n---\n`;
    const shared = path.join(sdd, "backlog/open/shared.md");
    const group = path.join(sdd, "backlog/open/group.md");
    await writeFile(shared, task("shared"));
    await chmod(shared, 0o666);
    await writeFile(group, task("group"));
    await chmod(group, 0o664);
    const reason = `${shared}: writable by every user (mode 666): another user could change what it runs; not taken until: chmod o-w ${shared}`;

    const r = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stderr.split("\n").filter((l) => l.startsWith("warning:")),
      [`warning: malformed task file left in place: ${reason}`],
    );
    assert.deepEqual((await readdir(path.join(sdd, "backlog/done"))).sort(), ["good.md", "group.md"]);
    assert.equal(await readFile(shared, "utf8"), task("shared"), "left in place, untouched");
    assert.equal((await stat(shared)).mode & 0o777, 0o666, "its mode is the owner's to change");
    const status = JSON.parse((await cli("status", "--json")).stdout);
    assert.deepEqual(status.malformed, [{ file: shared, state: "open", error: reason }]);
    const doctor = await cli("doctor", "--json");
    assert.equal(doctor.code, 1);
    const check = JSON.parse(doctor.stdout).checks.find((c: { name: string }) => c.name === "backlog");
    assert.equal(check.detail, `1 malformed task file(s): ${reason}`);

    // A running start takes it once the owner has done what the line says (a chmod: no new mtime).
    const run = spawnCli(["--sdd", sdd, "start", "--poll", "20"], { cwd: dir, env });
    let stderr = "";
    run.child.stderr!.on("data", (d: string) => (stderr += d));
    await waitFor("the refusal", () => stderr.includes(reason), { exited: run.done });
    await chmod(shared, 0o644);
    await waitFor(
      "the task taken and run",
      () => readdir(path.join(sdd, "backlog/done")).then((names) => names.includes("shared.md")),
      { exited: run.done },
    );
    assert.equal((await cli("stop")).code, 0);
    assert.equal((await run.done).code, 0);
  } finally {
    await cleanup();
  }
});

test("a missing agent binary fails that task with a clear reason", async () => {
  const { sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-nobin-");
  try {
    await writeFile(
      path.join(sdd, "config/agents.yaml"),
      "agents:\n  ghost:\n    adapter: template\n    command: [no-such-agent-cli-xyz, -p, '{prompt}']\n",
    );
    await addTask(ws, { id: "p1", title: "uses ghost", prompt: "do it", agent: "ghost" });
    await addTask(ws, { id: "ok", title: "fine", command: "true" });
    const r = await cli("start", "--until-idle", "--poll", "20", "--json");
    assert.equal(r.code, 1, "a terminally failed task makes --until-idle exit 1");
    assert.match(r.stderr, /task p1 failed: agent binary not found: no-such-agent-cli-xyz/);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(doc.failed, ["p1"]);
    assert.equal(doc.counts.done, 1);
    assert.deepEqual(await readdir(path.join(sdd, "backlog/failed")), ["p1.md"]);
  } finally {
    await cleanup();
  }
});

test("a broken WAL chain refuses start (exit 9) naming run and seq; a torn tail is repaired, not a break", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-chain-");
  try {
    await addTask(ws, { id: "a", title: "a", command: "true" });
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const [run] = await listRuns(ws);

    // A crash leaves a torn last line in an open run: start cuts it back and goes on.
    await unlink(closedMarkerPath(ws, run.run_id));
    await appendFile(run.file, '{"seq":999,"prev_hash":"00');
    await addTask(ws, { id: "b", title: "b", command: "true" });
    const torn = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(torn.code, 0, torn.stderr);
    assert.match(torn.stderr, /repaired a torn tail/);

    // One flipped byte in the middle of a chain is a break.
    const text = await readFile(run.file, "utf8");
    const lines = text.split("\n");
    const tampered = lines[2].replace('"title":"a"', '"title":"A"');
    assert.notEqual(tampered, lines[2]);
    lines[2] = tampered;
    await writeFile(run.file, lines.join("\n"));
    await addTask(ws, { id: "c", title: "c", command: "true" });
    const broken = await cli("start", "--until-idle");
    assert.equal(broken.code, 9, broken.stderr);
    assert.match(broken.stderr, new RegExp(`WAL chain broken in run ${run.run_id} at seq 2`));
    assert.match(broken.stderr, /bernstein wal verify --run/);
    assert.match(broken.stderr, /bernstein dr restore/);
    assert.deepEqual(await readdir(path.join(ws.root, "backlog/open")), ["c.md"], "nothing was touched");
  } finally {
    await cleanup();
  }
});

test("task add refuses a blank title, warns on a failed dependency; checkpoint refuses a missing --plan-file", async () => {
  const { dir, sdd, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-inputs-");
  try {
    const openDir = path.join(sdd, "backlog/open");
    for (const title of ["", "   "]) {
      const r = await cli("task", "add", title, "--command", "true");
      assert.equal(r.code, 2, `${JSON.stringify(title)}: ${r.stderr}`);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.match(r.stderr, /^bernstein: task add: title: must not be empty/);
    }
    assert.deepEqual(await readdir(openDir), [], "no task written");

    await addTask(ws, { id: "F1", title: "fails", command: "false" });
    assert.equal((await cli("start", "--until-idle")).code, 1);
    const after = await cli("task", "add", "after", "--id", "A1", "--depends-on", "F1", "--command", "true");
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stderr, /task A1 depends on F1, which has failed: it stays blocked until F1 is done/);
    const fine = await cli("task", "add", "fine", "--id", "A2", "--command", "true");
    assert.doesNotMatch(fine.stderr, /has failed/);

    const cps = await readdir(ws.checkpointsDir);
    const missing = path.join(dir, "no-such-plan.md");
    const r = await cli("checkpoint", "--plan-file", missing);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `bernstein: checkpoint: --plan-file ${missing}: not an existing file\n`);
    assert.deepEqual(await readdir(ws.checkpointsDir), cps, "no checkpoint written");
    await writeFile(path.join(dir, "plan.md"), "# plan\n");
    assert.equal((await cli("checkpoint", "--plan-file", "plan.md")).code, 0);
  } finally {
    await cleanup();
  }
});
