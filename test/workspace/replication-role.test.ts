/**
 * Only a leader decides: every `start` (plain, `--detach`, `--replication-listen`) refuses a
 * follower and a fenced node with exit 8 and one line, `doctor` says which it is, and the node
 * starts again once it leads (what `dr promote` writes: role leader, a raised epoch).
 */
import assert from "node:assert/strict";
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import type { DoctorCheck } from "../../src/orchestrator/doctor-check.js";
import { raiseEpoch, recordSuperseded } from "../../src/replication/epoch.js";
import { writeRole } from "../../src/workspace/replication-role.js";
import { orchestratorWorkspace } from "../orchestrator/support/workspace.js";

const byName = (checks: DoctorCheck[], name: string) => checks.find((c) => c.name === name)!;

test("a follower and a fenced node refuse every start (exit 8, one line); doctor names them; leading again starts", async () => {
  const { dir, ws, cli, cleanup } = await orchestratorWorkspace("bernstein-role-start-");
  try {
    const ran = path.join(dir, "ran.txt");
    assert.equal((await cli("task", "add", "t", "--id", "t1", "--command", `echo t1 >> ${ran}`)).code, 0);
    assert.equal((await cli("start", "--until-idle", "--poll", "20")).code, 0);
    // A follower's folders are its base snapshot's: t1 still open there while its WAL says done.
    await rename(ws.p("backlog", "done", "t1.md"), ws.p("backlog", "open", "t1.md"));
    assert.equal(
      (await cli("task", "add", "r", "--id", "rogue", "--command", `echo rogue >> ${ran}`)).code,
      0,
    );
    const leaderUrl = "http://127.0.0.1:9";
    await writeRole(ws, { role: "follower", leader_url: leaderUrl, region: "f1" });
    const token = path.join(dir, "tok");
    await writeFile(token, "0123456789abcdef0123456789\n", { mode: 0o600 });

    const followerLine = `bernstein: this node follows ${leaderUrl}; run \`bernstein dr promote\` before leading\n`;
    for (const args of [
      ["start", "--until-idle"],
      ["start", "--detach"],
      ["start", "--until-idle", "--replication-listen", "127.0.0.1:0", "--token-file", token],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 8, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, followerLine, args.join(" "));
    }
    const doctor = JSON.parse((await cli("doctor", "--json")).stdout) as { checks: DoctorCheck[] };
    assert.equal(byName(doctor.checks, "replication").verdict, "pass");
    assert.match(
      byName(doctor.checks, "replication").detail,
      /^follower of http:\/\/127\.0\.0\.1:9 at epoch 1: `start` refuses it/,
    );
    const folders = byName(doctor.checks, "folders");
    assert.equal(folders.verdict, "warn");
    assert.match(folders.fix, /`bernstein dr promote` moves them/);
    assert.doesNotMatch(folders.fix, /bernstein start/);

    // An old leader a promotion fenced (what its endpoint records on POST /fence).
    await writeRole(ws, { role: "leader" });
    await recordSuperseded(ws, 2, "fenced by a promotion to epoch 2");
    for (const args of [
      ["start", "--until-idle"],
      ["start", "--detach"],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 8, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.match(
        r.stderr,
        /^bernstein: this node was superseded by epoch 2 \(its epoch 1 is fenced\) and must not lead; re-join as a follower: `bernstein replicate follow --leader NEW_LEADER_URL --rebootstrap`\n$/,
      );
    }
    const fenced = await cli("doctor", "--json");
    assert.equal(fenced.code, 1, fenced.stdout);
    const check = byName((JSON.parse(fenced.stdout) as { checks: DoctorCheck[] }).checks, "replication");
    assert.equal(check.verdict, "fail");
    assert.match(check.detail, /^fenced: superseded by epoch 2 \(fenced by a promotion to epoch 2\)/);
    assert.match(check.fix, /replicate follow --leader NEW_LEADER_URL --rebootstrap/);
    assert.equal(await readFile(ran, "utf8"), "t1\n", "nothing ran on the follower or the fenced node");

    // Promoted (a raised epoch clears the fencing): it starts, and moves t1 to the folder of its state.
    await raiseEpoch(ws, 2);
    const led = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(led.code, 0, led.stderr);
    assert.equal(await readFile(ran, "utf8"), "t1\nrogue\n", "t1 did not run again");
    const after = JSON.parse((await cli("doctor", "--json")).stdout) as { checks: DoctorCheck[] };
    assert.equal(byName(after.checks, "replication").detail, "leader at epoch 3");
    assert.equal(byName(after.checks, "folders").verdict, "pass");
  } finally {
    await cleanup();
  }
});
