/**
 * `dr restore --force` over a running orchestrator stops it (its agents killed, as `stop --force`)
 * once the restore is ready to swap, so that nothing of it writes into the restored workspace; a
 * restore refused before that (a wrong password) leaves it running.
 */
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { readAgentRecord } from "../../src/orchestrator/wrapper.js";
import { readLock } from "../../src/workspace/lock.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { snapshotTree } from "./support/workspace.js";
import { runCli, untilGate, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "../orchestrator/support/workspace.js";

test("dr restore --force stops the running orchestrator and its agents before the swap; a wrong password leaves them running", async () => {
  const { dir, ws, sdd, env, cli, cleanup } = await orchestratorWorkspace("bernstein-restore-force-");
  const gate = path.join(dir, "gate");
  let orchestratorPid: number | undefined;
  let agentGroup: number | undefined;
  try {
    await addTask(ws, { id: "first", title: "first", command: "true" });
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    const backup = path.join(dir, "b.tar.gz");
    const pw = path.join(dir, "pw");
    const wrongPw = path.join(dir, "wrong-pw");
    await writeFile(pw, "pw\n", { mode: 0o600 });
    await writeFile(wrongPw, "nope\n", { mode: 0o600 });
    const b = await cli("dr", "backup", "--to", backup, "--encrypt", "--password-file", pw);
    assert.equal(b.code, 0, b.stderr);

    await addTask(ws, { id: "slow", title: "slow", command: untilGate(gate) });
    const started = await cli("start", "--detach", "--poll", "20");
    assert.equal(started.code, 0, started.stderr);
    const rec = await waitFor("the agent running", async () => {
      const r = await readAgentRecord(ws, "slow#1");
      return r?.command_pgid ? r : undefined;
    });
    agentGroup = rec.command_pgid ?? undefined;
    const lock = await readLock(ws);
    assert.equal(lock.state, "held");
    orchestratorPid = lock.state === "held" ? lock.info.pid : undefined;

    const unforced = await cli("dr", "restore", "--from", `${backup}.enc`, "--password-file", pw);
    assert.equal(unforced.code, 3, unforced.stderr);
    assert.match(unforced.stderr, /^bernstein: .* is in use by pid \d+ .*--force to have it stopped\n$/);

    const backlogBefore = snapshotTree(path.join(sdd, "backlog"));
    const besideBefore = await readdir(dir);
    const wrong = await cli(
      "dr",
      "restore",
      "--from",
      `${backup}.enc`,
      "--password-file",
      wrongPw,
      "--force",
    );
    assert.equal(wrong.code, 4, wrong.stderr);
    assert.ok(isProcessAlive(orchestratorPid!), "a refused restore leaves the orchestrator running");
    assert.ok(isProcessAlive(agentGroup!), "and its agent");
    assert.deepEqual(snapshotTree(path.join(sdd, "backlog")), backlogBefore);
    assert.deepEqual(await readdir(dir), besideBefore, "no staging folder, nothing kept aside");

    const forced = await cli(
      "dr",
      "restore",
      "--from",
      `${backup}.enc`,
      "--password-file",
      pw,
      "--force",
      "--json",
    );
    assert.equal(forced.code, 0, forced.stderr);
    const doc = JSON.parse(forced.stdout) as { warnings: string[]; kept: string };
    assert.ok(
      doc.warnings.some((w) => w.startsWith(`stopped pid ${orchestratorPid} `) && w.endsWith("(--force)")),
      forced.stdout,
    );
    assert.equal(isProcessAlive(orchestratorPid!), false, "the orchestrator is stopped");
    assert.equal(isProcessAlive(agentGroup!), false, "its agent is killed (stop --force)");
    assert.equal((await readLock(ws)).state, "free");
    // The restored workspace is the backup's, and nothing else wrote into it.
    for (const check of [["doctor"], ["audit", "verify"], ["wal", "verify"]]) {
      const r = await cli(...check);
      assert.equal(r.code, 0, `${check.join(" ")}: ${r.stdout}${r.stderr}`);
    }
    const status = JSON.parse((await cli("status", "--json")).stdout) as { tasks: Record<string, number> };
    assert.equal(status.tasks.done, 1);
    assert.equal(status.tasks.open ?? 0, 0, "the slow task was added after the backup");
    // The previous workspace kept: the slow task's run ended there (interrupted by the stop).
    const kept = await runCli(["--sdd", doc.kept, "status", "--json"], { cwd: dir, env });
    assert.equal(kept.code, 0, kept.stderr);
  } finally {
    await writeFile(gate, "").catch(() => {});
    if (orchestratorPid && isProcessAlive(orchestratorPid)) process.kill(orchestratorPid, "SIGKILL");
    await cleanup();
  }
});
