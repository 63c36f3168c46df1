/**
 * `wal verify`, `doctor` and `status` beside a running orchestrator: the last line of its run
 * caught between its write and its newline is a line being written, not a crash's torn tail that
 * `start` cuts. Exit 0, worded as such, and `--json` keeps the run's `torn_tail` with
 * `orchestrator_running: true`.
 */
import assert from "node:assert/strict";
import { appendFileSync, readFileSync, readdirSync, truncateSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir, waitFor } from "../helpers.js";

test("a line the running orchestrator is writing: wal verify, doctor and status pass and say so", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-line-being-written-");
  const env = envFor(dir);
  const sdd = path.join(dir, ".sdd");
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { env });
  t.after(async () => {
    await cli("stop", "--force");
    await cleanup();
  });
  assert.equal((await cli("init")).code, 0);
  const started = await cli("start", "--detach", "--json");
  assert.equal(started.code, 0, started.stderr);
  await waitFor("the orchestrator to run", async () => {
    const s = JSON.parse((await cli("status", "--json")).stdout);
    return s.orchestrator.running && s.wal.seq >= 0;
  });
  const walDir = path.join(sdd, "runtime", "wal");
  const file = path.join(
    walDir,
    readdirSync(walDir).find((n) => n.endsWith(".wal.jsonl"))!,
  );
  const size = readFileSync(file).length;
  const last = readFileSync(file, "utf8").trimEnd().split("\n").at(-1)!;
  // What a reader sees between the writer's write and its newline: part of the next line.
  appendFileSync(file, last.replace(/"seq":\d+/, '"seq":99').slice(0, 80));
  try {
    const verify = await cli("wal", "verify");
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /a line being written/);
    assert.doesNotMatch(verify.stdout + verify.stderr, /bernstein start|torn tail/);
    const json = JSON.parse((await cli("wal", "verify", "--json")).stdout);
    assert.equal(json.ok, true);
    assert.equal(json.runs[0].torn_tail.orchestrator_running, true);
    assert.equal(json.runs[0].torn_tail.bytes, 80);

    const doctor = await cli("doctor");
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /a line being written/);
    assert.doesNotMatch(doctor.stdout, /torn tail|cuts it/);

    const status = await cli("status");
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, /^wal: .*, a line being written$/m);
  } finally {
    // The orchestrator's next append must not follow a fragment it never wrote.
    truncateSync(file, size);
  }
  const stopped = await cli("stop");
  assert.equal(stopped.code, 0, stopped.stderr);
});
