/**
 * `start --detach` answers for the background process it starts until it returns: a failure quotes
 * only what that process wrote, and Ctrl-C / SIGTERM before it returns stops that process.
 * `stop --timeout 0` drains without waiting for the agents, as Ctrl-C of a foreground start does.
 */
import assert from "node:assert/strict";
import { chmod, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { spawnCli, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "./support/task-counts.js";
import { orchestratorWorkspace } from "./support/workspace.js";

test("a failed start --detach quotes only its own child's lines, not earlier runs' lines in the log", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-detach-log-");
  try {
    const log = path.join(ws.logsDir, "orchestrator.log");
    await writeFile(log, "warning: task F cannot run: dependency E is blocked\nrun run-x stopped: earlier\n");
    const key = path.join(dir, "k");
    await writeFile(key, "0123456789abcdef0123456789abcdef");
    await chmod(key, 0o644);
    for (let i = 0; i < 2; i++) {
      const r = await cli("start", "--detach", "--key-file", key);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.split("\n").filter(Boolean);
      assert.equal(lines.length, 1, r.stderr);
      assert.doesNotMatch(lines[0]!, /dependency E|run-x| \| /, "nothing from earlier runs");
      assert.equal(lines[0]!.match(/is readable by group or others/g)?.length, 1, r.stderr);
    }
    // The log itself stays append-only: the earlier lines and both children's lines are all there.
    const text = await readFile(log, "utf8");
    assert.match(text, /^warning: task F cannot run/);
    assert.equal(text.match(/is readable by group or others/g)?.length, 2);
  } finally {
    await cleanup();
  }
});

test("a failed start --detach reports its child's error line, not the lines the child wrote before it", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-detach-errline-");
  try {
    // An unreadable lock: the child replaces it with a warning, then refuses the key file.
    await writeFile(ws.lockFile, "{torn");
    const key = path.join(dir, "k");
    await writeFile(key, "0123456789abcdef0123456789abcdef");
    await chmod(key, 0o644);
    const r = await cli("start", "--detach", "--key-file", key);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0]!,
      /^bernstein: start --detach: the orchestrator exited \(code 2\): .*is readable by group or others/,
    );
    assert.doesNotMatch(lines[0]!, /unreadable lock| \| /, r.stderr);
    assert.match(
      await readFile(path.join(ws.logsDir, "orchestrator.log"), "utf8"),
      /unreadable lock file/,
      "the warning is in the log",
    );
  } finally {
    await cleanup();
  }
});

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} while start --detach waits for its child stops that child: nothing keeps running`, async () => {
    const { dir, sdd, env, cli, cleanup } = await orchestratorWorkspace("bernstein-detach-int-");
    let pid: number | undefined;
    try {
      // The background orchestrator (its argv has no --detach) records its pid and then hangs
      // before it could report running, so the signal surely comes while the parent waits.
      const childPid = path.join(dir, "child.pid");
      const hold = path.join(dir, "hold.mjs");
      await writeFile(
        hold,
        `import { writeFileSync } from "node:fs";
if (!process.argv.includes("--detach")) {
  writeFileSync(${JSON.stringify(childPid)}, String(process.pid));
  await new Promise((r) => setTimeout(r, 2 ** 31 - 1));
}
`,
      );
      const run = spawnCli(["--sdd", sdd, "start", "--detach"], {
        cwd: dir,
        env: { ...env, NODE_OPTIONS: `--import=${pathToFileURL(hold).href}` },
      });
      pid = Number(
        await waitFor(
          "the background orchestrator started",
          () => readFile(childPid, "utf8").catch(() => ""),
          {
            exited: run.done,
          },
        ),
      );
      run.child.kill(signal);
      const r = await run.done;
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(
        r.stderr,
        `bernstein: interrupted by ${signal}; stopped the orchestrator it started (pid ${pid})\n`,
      );
      assert.equal(isProcessAlive(pid), false);
      const st = await cli("status", "--json");
      assert.equal(st.code, 0, st.stderr);
      assert.equal(JSON.parse(st.stdout).orchestrator.running, false);
    } finally {
      // A child left behind by a failure would hang for good.
      if (pid && isProcessAlive(pid)) process.kill(pid, "SIGKILL");
      await cleanup();
    }
  });
}

test("stop --timeout 0 drains without waiting for the agents; they keep running and the next start finishes them", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-stop0-");
  const gate = path.join(dir, "gate");
  try {
    await addTask(ws, {
      id: "slow",
      title: "slow",
      command: untilGate(gate),
    });
    const started = await cli("start", "--detach", "--poll", "20");
    assert.equal(started.code, 0, started.stderr);
    const rec = await waitFor("the agent running", async () => {
      const r = await readAgentRecord(ws, "slow#1");
      return r?.command_pgid ? r : undefined;
    });
    const stopped = await cli("stop", "--timeout", "0", "--json");
    assert.equal(stopped.code, 0, stopped.stderr);
    const doc = JSON.parse(stopped.stdout) as Record<string, unknown>;
    assert.equal(doc.stopped, true);
    assert.equal(doc.mode, "drain");
    assert.ok(isProcessAlive(rec.command_pgid!), "the agent was left running");
    assert.equal((await taskCounts(ws)).claimed, 1);

    await writeFile(gate, "");
    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await taskCounts(ws)).done, 1);
  } finally {
    await writeFile(gate, "").catch(() => {});
    await cleanup();
  }
});

test("start --detach --replication-listen 127.0.0.1:0 reports the URL the leader serves at (--json and human)", async () => {
  const { dir, cli, cleanup } = await orchestratorWorkspace("bernstein-detach-repl-");
  const started: number[] = [];
  try {
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "0123456789abcdef0123456789\n", { mode: 0o600 });
    const flags = ["--replication-listen", "127.0.0.1:0", "--token-file", tokenFile];
    const j = await cli("--json", "start", "--detach", ...flags);
    assert.equal(j.code, 0, j.stderr);
    const shown = JSON.parse(j.stdout) as { replication_url: string; pid: number };
    started.push(shown.pid);
    const url = shown.replication_url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    const answer = await fetch(`${url}/status`, {
      headers: { authorization: "Bearer 0123456789abcdef0123456789" },
    });
    assert.equal(answer.status, 200);
    assert.equal((await cli("stop")).code, 0);
    const h = await cli("start", "--detach", ...flags);
    assert.equal(h.code, 0, h.stderr);
    started.push(Number(/pid (\d+)/.exec(h.stdout)?.[1]));
    assert.match(
      h.stdout,
      /^orchestrator running in the background: pid \d+, run \S+, log .+, replication serving at http:\/\/127\.0\.0\.1:[1-9]\d*\n$/,
    );
    assert.equal((await cli("stop")).code, 0);
  } finally {
    // A background orchestrator left by a failure would serve (and hold its port) for good.
    for (const pid of started) if (pid && isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    await cleanup();
  }
});
