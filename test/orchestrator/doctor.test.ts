import assert from "node:assert/strict";
import { appendFile, chmod, copyFile, cp, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runDoctor } from "../../src/orchestrator/doctor.js";
import { type DoctorCheck } from "../../src/orchestrator/doctor-check.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns } from "../../src/wal/reader.js";
import { writeClosedMarker } from "../../src/wal/recovery.js";
import { WalWriter } from "../../src/wal/writer.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { FIXTURES, runCli, scratchDir } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const byName = (checks: DoctorCheck[], name: string) => checks.find((c) => c.name === name)!;

test("doctor on the Python reference workspace: passes with warnings, DIR may hold .sdd or be it", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-py-");
  try {
    await cp(path.join(FIXTURES, "python-reference/workspace"), path.join(dir, "ws"), { recursive: true });
    const key = path.join(dir, "audit.key");
    await copyFile(path.join(FIXTURES, "python-reference/audit.key"), key);
    await chmod(key, 0o600);
    for (const target of [path.join(dir, "ws"), path.join(dir, "ws", ".sdd")]) {
      const r = await runCli(["doctor", "--workspace", target, "--key-file", key, "--json"]);
      assert.equal(r.code, 0, r.stdout);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.workspace, path.join(dir, "ws", ".sdd"));
      assert.equal(byName(doc.checks, "wal").verdict, "pass");
      assert.equal(byName(doc.checks, "audit").verdict, "pass");
      assert.equal(byName(doc.checks, "backlog").detail, "3 task file(s) parse");
      assert.equal(byName(doc.checks, "checkpoint").verdict, "warn", "the Python checkpoint is foreign");
      for (const c of doc.checks)
        assert.deepEqual(Object.keys(c).sort(), ["detail", "fix", "name", "ok", "verdict"]);
    }
    // No key anywhere: a warning, never a pass, and no key is created.
    const state = path.join(dir, "empty-state");
    const nokey = await runCli(["doctor", "--workspace", path.join(dir, "ws"), "--json"], {
      env: { XDG_STATE_HOME: state, BERNSTEIN_AUDIT_KEY_PATH: "" },
    });
    assert.equal(nokey.code, 0);
    const audit = byName(JSON.parse(nokey.stdout).checks, "audit");
    assert.equal(audit.verdict, "warn");
    assert.match(audit.detail, /no audit key/);
    await assert.rejects(readFile(path.join(state, "bernstein/audit.key")));
  } finally {
    await cleanup();
  }
});

test("doctor after `dr restore` of the Python reference backup: passes, the version mismatch is a warning", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-rst-");
  try {
    const sdd = path.join(dir, "restored", ".sdd");
    const key = path.join(dir, "audit.key");
    await copyFile(path.join(FIXTURES, "python-reference/audit.key"), key);
    await chmod(key, 0o600);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: key };
    const r = await runCli(
      ["dr", "restore", "--from", path.join(FIXTURES, "python-reference/backup-plain.tar.gz"), "--sdd", sdd],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    const doc = await runCli(["doctor", "--workspace", path.join(dir, "restored"), "--json"], { env });
    assert.equal(doc.code, 0, doc.stdout);
    const version = byName(JSON.parse(doc.stdout).checks, "version");
    assert.equal(version.verdict, "warn");
    assert.equal(version.ok, true);
    assert.match(version.detail, /version unknown/);
    assert.equal(byName(JSON.parse(doc.stdout).checks, "audit").verdict, "pass");
  } finally {
    await cleanup();
  }
});

test("doctor fails on a broken chain, a claim missing from the WAL, a task in two folders, a ledger mismatch", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-bad-");
  try {
    const sdd = path.join(dir, ".sdd");
    const { workspace: ws } = await initWorkspace(sdd);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    await addTask(ws, { id: "a", title: "a", command: "true" });
    await addTask(ws, { id: "b", title: "b", command: "true" });
    assert.equal((await runCli(["--sdd", sdd, "start", "--until-idle"], { env })).code, 0);
    const opts = { env: { ...process.env, ...env } };
    assert.ok((await runDoctor(sdd, opts)).checks.every((c) => c.verdict === "pass"));

    // A file in claimed/ that the WAL never claimed.
    await rename(path.join(sdd, "backlog/done/b.md"), path.join(sdd, "backlog/claimed/b.md"));
    let checks = (await runDoctor(sdd, opts)).checks;
    assert.equal(byName(checks, "claims").verdict, "fail");
    assert.match(byName(checks, "claims").detail, /\bb\b/);
    await rename(path.join(sdd, "backlog/claimed/b.md"), path.join(sdd, "backlog/done/b.md"));

    // The same task in two folders.
    await copyFile(path.join(sdd, "backlog/done/a.md"), path.join(sdd, "backlog/open/a.md"));
    checks = (await runDoctor(sdd, opts)).checks;
    assert.equal(byName(checks, "backlog_unique").verdict, "fail");

    // A ledger row the state does not know.
    await appendFile(
      ws.costLedger,
      JSON.stringify({
        timestamp: "x",
        run_id: "r",
        task_id: "a",
        agent_id: "a#9",
        model: "m",
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 1.0,
      }) + "\n",
    );
    checks = (await runDoctor(sdd, opts)).checks;
    assert.equal(byName(checks, "ledger").verdict, "fail");

    // One flipped byte in the WAL.
    const [run] = await listRuns(ws);
    const text = await readFile(run.file, "utf8");
    await writeFile(run.file, text.replace('"title":"b"', '"title":"B"'));
    const r = await runCli(["--sdd", sdd, "doctor", "--json"], { env });
    assert.equal(r.code, 1);
    const wal = byName(JSON.parse(r.stdout).checks, "wal");
    assert.equal(wal.ok, false);
    assert.match(wal.detail, new RegExp(`${run.run_id} at seq \\d+`));
    assert.match(wal.fix, /dr restore/);
    // --quiet prints nothing but errors: the failure is one line on stderr, not a bare exit 1.
    const quiet = await runCli(["--sdd", sdd, "doctor", "--quiet"], { env });
    assert.equal(quiet.code, 1);
    assert.equal(quiet.stdout, "");
    assert.match(quiet.stderr, /^bernstein: doctor: [a-z_]+: [^\n]+\n$/);
  } finally {
    await cleanup();
  }
});

test("doctor: a claim in flight at a crash (its intent in a run left open) is the claimed file's claim", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-intent-");
  try {
    const sdd = path.join(dir, ".sdd");
    const { workspace: ws } = await initWorkspace(sdd);
    const opts = {
      env: { ...process.env, XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" },
    };
    await addTask(ws, { id: "c", title: "c", command: "true" });
    const wal = await WalWriter.open(ws, "run-crashed");
    // Many other decisions around it, one of them naming task_claimed in its inputs.
    for (let i = 0; i < 300; i++)
      await wal.append({
        decision_type: "budget_checked",
        inputs: { note: i === 7 ? "task_claimed" : `n${i}` },
        committed: true,
      });
    const intent = await wal.append({
      decision_type: "task_claimed",
      inputs: { task_id: "c", attempt: 1 },
      committed: false,
    });
    await wal.append({ decision_type: "budget_checked", inputs: {}, committed: true });
    await wal.close();
    await rename(path.join(sdd, "backlog/open/c.md"), path.join(sdd, "backlog/claimed/c.md"));
    let claims = byName((await runDoctor(sdd, opts)).checks, "claims");
    assert.equal(claims.verdict, "pass", claims.detail);
    assert.equal(claims.detail, "1 claimed task(s), each with its claim in the WAL");
    // Closed cleanly, the run holds no claim in flight: the file is claimed without one.
    await writeClosedMarker(ws, {
      run_id: "run-crashed",
      closed_at: new Date().toISOString(),
      last_seq: intent.seq + 1,
      last_hash: wal.durablePosition!.entry_hash,
    });
    claims = byName((await runDoctor(sdd, opts)).checks, "claims");
    assert.equal(claims.verdict, "fail");
    assert.match(claims.detail, /claimed without a claim in the WAL: c$/);
  } finally {
    await cleanup();
  }
});

test("doctor where there is no workspace is a usage error (exit 2, one line), not a failed check", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-none-");
  try {
    const env = { BERNSTEIN_SDD: undefined };
    for (const args of [
      ["doctor"],
      ["doctor", "--workspace", path.join(dir, "nope")],
      ["doctor", "--quiet"],
    ]) {
      const r = await runCli(args, { cwd: dir, env });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^bernstein: [^\n]*no[^\n]*workspace[^\n]*bernstein init[^\n]*\n$/);
    }
    const j = await runCli(["doctor", "--json"], { cwd: dir, env });
    assert.equal(j.code, 2);
    assert.deepEqual([JSON.parse(j.stdout).ok, JSON.parse(j.stdout).exit_code], [false, 2]);
  } finally {
    await cleanup();
  }
});

test("doctor: agents.yaml that start refuses fails; tasks start would fail for good (no agent, a CLI not on PATH) warn", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-doc-agents-");
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    const agents = path.join(ws.configDir, "agents.yaml");
    const agentsCheck = async () => byName((await runDoctor(ws.root)).checks, "agents");

    assert.equal((await agentsCheck()).verdict, "pass");
    await writeFile(agents, "default: shell\nagentz: {}\n");
    const bad = await agentsCheck();
    assert.equal(bad.verdict, "fail");
    assert.equal(bad.detail, `${agents}: agentz: unknown key (known here: default, agents)`);

    await writeFile(
      agents,
      "agents:\n  shell: {adapter: shell}\n  ghost: {adapter: template, command: [no-such-agent-cli-xyz, '{prompt}']}\n",
    );
    await addTask(ws, { id: "ok", title: "runs", command: "true" });
    await addTask(ws, { id: "g1", title: "ghost", prompt: "x", agent: "ghost" });
    await addTask(ws, { id: "g2", title: "ghost too", prompt: "y", agent: "ghost" });
    // Written by hand (task add refuses them): prompt tasks under the default agent, shell.
    for (const id of ["p1", "p2", "p3", "p4", "p5"])
      await writeFile(
        path.join(ws.root, `backlog/open/${id}.md`),
        `---\nid: ${id}\ntitle: prompt only\nprompt: z\n---\n`,
      );
    const warned = await agentsCheck();
    assert.equal(warned.verdict, "warn");
    assert.equal(
      warned.detail,
      `${agents}: no agent can run 5 task(s): the default agent is shell, which runs a --command and the task has none ` +
        "(tasks p1, p2, p3, 2 more); not on PATH: no-such-agent-cli-xyz (tasks g1, g2)",
    );
    assert.match(warned.fix, /set "default: NAME" in .*agents\.yaml; install those CLIs here/);

    // Tasks no longer to run are not checked.
    for (const id of ["g1", "g2", "p1", "p2", "p3", "p4", "p5"])
      await rename(path.join(ws.root, `backlog/open/${id}.md`), path.join(ws.root, `backlog/done/${id}.md`));
    const passed = await agentsCheck();
    assert.equal(passed.verdict, "pass");
    assert.equal(
      passed.detail,
      `${agents} loaded (default agent: shell); each of the 1 task(s) to run has its agent here`,
    );
  } finally {
    await cleanup();
  }
});

test("doctor's ledger check holds each row against the usage the WAL recorded: it names the first that differs", async () => {
  const { ws, cli, cleanup } = await orchestratorWorkspace("bernstein-doc-ledger-");
  try {
    const costs: Record<string, number> = { a: 0.1, b: 0.2, c: 0.3 };
    for (const [id, cost] of Object.entries(costs))
      await addTask(ws, {
        id,
        title: id,
        command: `echo '{"cost_usd": ${cost}, "input_tokens": 100, "output_tokens": 5, "model": "m1"}'`,
      });
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const ledger = async () => {
      const r = await cli("doctor", "--json");
      return { code: r.code, ...byName(JSON.parse(r.stdout).checks, "ledger") };
    };
    const good = await readFile(ws.costLedger, "utf8");
    assert.deepEqual(await ledger(), {
      code: 0,
      name: "ledger",
      ok: true,
      verdict: "pass",
      detail: "3 row(s), $0.6000, each as the WAL recorded it",
      fix: "",
    });
    // Rows are written as the agents finish: find b's line and the commit of its usage.
    const lines = good.split("\n");
    const lineNo = lines.findIndex((l) => l.includes('"task_id":"b"')) + 1;
    const row = JSON.parse(lines[lineNo - 1]) as { agent_id: string };
    const [run] = await listRuns(ws);
    const seq = (await readFile(run.file, "utf8"))
      .split("\n")
      .map((l) => (l ? JSON.parse(l) : {}))
      .find((e) => e.decision_type === "task_completed" && e.committed && e.inputs.task_id === "b").seq;
    const at = `line ${lineNo} (task b, agent ${row.agent_id})`;
    const where = `(run ${run.run_id} seq ${seq})`;
    const alter = (from: string, to: string) => {
      lines[lineNo - 1] = lines[lineNo - 1].replace(from, to);
      return writeFile(ws.costLedger, lines.join("\n"));
    };

    await alter('"cost_usd":0.2', '"cost_usd":0.75');
    const cost = await ledger();
    assert.equal(cost.verdict, "fail");
    assert.equal(cost.detail, `${at}: cost_usd is 0.75, the WAL recorded 0.2 ${where}`);
    assert.match(cost.fix, /`start` never rewrites a row: put the WAL's values back on the named line/);
    // What the fix says: start does not change it.
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    assert.equal((await ledger()).detail, cost.detail);

    // Fields that leave the sum alone are checked too.
    await alter('"cost_usd":0.75', '"cost_usd":0.2');
    await alter('"input_tokens":100', '"input_tokens":999999');
    await alter('"model":"m1"', '"model":"m2"');
    const fields = await ledger();
    assert.equal(fields.verdict, "fail");
    assert.equal(
      fields.detail,
      `${at}: model is "m2", the WAL recorded "m1", input_tokens is 999999, the WAL recorded 100 ${where}`,
    );

    // A row cut short in the middle: its line is named, and start writes the usage's row again.
    lines[lineNo - 1] = lines[lineNo - 1].slice(0, 40);
    await writeFile(ws.costLedger, lines.join("\n"));
    const cut = await ledger();
    assert.equal(cut.verdict, "fail");
    assert.equal(
      cut.detail,
      `line ${lineNo}: not a cost row, not counted; 1 usage(s) in the WAL have no row: agent ${row.agent_id} (task b, run ${run.run_id} seq ${seq})`,
    );
    assert.match(
      cut.fix,
      /remove the named line: it is not counted; `bernstein start` writes the missing rows from the WAL$/,
    );
    const start = await cli("start", "--until-idle", "--poll", "20");
    assert.match(start.stderr, /wrote 0 task file\(s\) and 1 ledger row\(s\) from the WAL/);
    const after = await ledger();
    assert.equal(after.code, 0);
    assert.equal(after.verdict, "warn");
    assert.equal(
      after.detail,
      `3 row(s), $0.6000, each as the WAL recorded it; line ${lineNo}: not a cost row, not counted`,
    );
  } finally {
    await cleanup();
  }
});

test("doctor warns of a ledger row whose completion a crash left without its commit (start completes it), and a drill there passes; a row nothing explains fails", async () => {
  const { ws, cli, env, dir, cleanup } = await orchestratorWorkspace("bernstein-doc-ledger-crash-");
  try {
    await addTask(ws, { id: "a", title: "a", command: `echo '{"cost_usd": 0.4}'` });
    // SIGKILLed after the completion's action (the row is written), before its commit.
    const crashed = await runCli(["--sdd", ws.root, "start", "--until-idle", "--poll", "20"], {
      cwd: dir,
      env: { ...env, BERNSTEIN_CRASH_AT: "task_completed:after_action" },
    });
    assert.equal(crashed.signal, "SIGKILL");
    const ledger = async (extra: Record<string, string> = {}) => {
      const r = await runCli(["--sdd", ws.root, "doctor", "--json"], { cwd: dir, env: { ...env, ...extra } });
      return { code: r.code, ...byName(JSON.parse(r.stdout).checks, "ledger") };
    };
    const pending = await ledger();
    assert.equal(pending.code, 0, pending.detail);
    assert.equal(pending.verdict, "warn");
    assert.match(
      pending.detail,
      /^1 row\(s\), \$0\.4000; line 1 \(task a, agent a#1\): its completion is an intent without a commit/,
    );
    assert.match(pending.fix, /`bernstein start` completes it/);

    // The drill's doctor step agrees: what the next start completes is no failed check.
    const drill = await cli("dr", "drill");
    assert.equal(drill.code, 0, drill.stdout + drill.stderr);

    // An intent the next start would not replay (older than the window) stays a failure.
    const stale = await ledger({ BERNSTEIN_REPLAY_STALE_AFTER: "0" });
    assert.equal(stale.verdict, "fail");
    assert.match(stale.detail, /older than the replay staleness window \(0 s\)/);
    assert.match(stale.fix, /does not complete it/);

    // A row that no intent or commit explains fails beside it.
    const row = {
      timestamp: new Date().toISOString(),
      run_id: "r",
      task_id: "z",
      agent_id: "z#1",
      cost_usd: 1,
    };
    await appendFile(ws.costLedger, JSON.stringify(row) + "\n");
    const unknown = await ledger();
    assert.equal(unknown.code, 1);
    assert.equal(unknown.verdict, "fail");
    assert.match(unknown.detail, /a crash between the row and the commit; 1 more line\(s\) differ$/);
    assert.match(
      unknown.fix,
      /`bernstein start` completes it: .*; remove the named line if it is a hand edit/,
    );

    // What the warning said: start completes the usage, whose commit then matches the row.
    const lines = (await readFile(ws.costLedger, "utf8")).split("\n");
    await writeFile(ws.costLedger, lines[0] + "\n");
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const healed = await ledger();
    assert.equal(healed.verdict, "pass", healed.detail);
    assert.equal(healed.detail, "1 row(s), $0.4000, each as the WAL recorded it");
  } finally {
    await cleanup();
  }
});
