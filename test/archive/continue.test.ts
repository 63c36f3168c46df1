/**
 * After a point-in-time restore the orchestrator continues from that point (issue 16 item 4),
 * with real processes throughout: decisions by a running orchestrator, the archive, a restore
 * `--at` an instant while three tasks were in flight (refused while the orchestrator runs), `start`
 * (the in-flight intents recovered as after any crash), more decisions, `stop`; then `wal verify`,
 * `audit verify` and `doctor` pass, every task is done exactly once, and `dr archive` on the
 * restored workspace starts a new generation while the old one stays restorable.
 */
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { scratchDir, untilGate, waitFor } from "../helpers.js";
import { taskCounts } from "../orchestrator/support/task-counts.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const taskFile = (id: string, command: string): string =>
  `---\nid: ${id}\ntitle: ${id}\ncommand: ${JSON.stringify(command)}\n---\n${id}\n`;

describe("start continues from a point-in-time restore", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-continue-");
    f = await archiveFixture(scratch.dir);
  });
  after(async () => {
    await f.cli(["stop", "--force"]).catch(() => {});
    await scratch.cleanup();
  });

  const status = async (sdd = f.sdd) => {
    const r = await f.cli(["--json", "status"], sdd);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { tasks: Record<string, number>; orchestrator: { running: boolean } };
  };
  /** Decisions of a type committed to the WAL: a task's file moves before its commit is written. */
  const committed = async (type: string) => {
    let n = 0;
    for (const run of await listRuns(f.ws))
      for await (const { entry } of readWalEntries(run.file))
        if (entry.committed && entry.decision_type === type) n++;
    return n;
  };
  const open = (id: string, command: string) =>
    writeFile(f.ws.p("backlog", "open", `${id}.md`), taskFile(id, command));

  it("restore --at a mid instant, start, more decisions, stop: the chains verify and nothing runs twice", async () => {
    const store = path.join(scratch.dir, "store");
    const gate = path.join(scratch.dir, "gate");
    for (let i = 0; i < 3; i++) await open(`T-${i}`, "true");
    // Held until the gate exists, so the instant noted below has them claimed and unfinished.
    for (let i = 0; i < 3; i++) await open(`G-${i}`, untilGate(gate));
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    const started = await f.cli(["start", "--detach", "--max-agents", "6", "--poll", "50"]);
    assert.equal(started.code, 0, started.stderr);
    await waitFor("3 done (committed) and 3 held", async () => {
      const t = await taskCounts(f.ws);
      if (t.done !== 3 || t.claimed !== 3) return false;
      return (await committed("task_completed")) === 3 && (await committed("task_claimed")) === 6;
    });
    const at = new Date().toISOString();
    while (new Date().toISOString() === at); // anything later is stamped after the noted instant

    const refused = await f.cli(["dr", "restore", "--from", store, "--latest"]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /in use by/);

    await writeFile(gate, "");
    await waitFor("all 6 done", async () => (await taskCounts(f.ws)).done === 6);
    assert.equal((await f.cli(["stop", "--timeout", "30"])).code, 0);
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);

    const back = await f.cli(["--json", "dr", "restore", "--from", store, "--at", at]);
    assert.equal(back.code, 0, back.stderr);
    assert.ok(JSON.parse(back.stdout).kept, "the workspace before the restore is kept");
    const then = (await status()).tasks;
    assert.deepEqual([then.done, then.claimed, then.open], [3, 3, 0], JSON.stringify(then));

    const again = await f.cli(["start", "--detach", "--max-agents", "6", "--poll", "50"]);
    assert.equal(again.code, 0, again.stderr);
    for (let i = 0; i < 3; i++) await open(`N-${i}`, "true");
    await waitFor("all 9 done", async () => (await taskCounts(f.ws)).done === 9);
    assert.equal((await f.cli(["stop", "--timeout", "30"])).code, 0);
    const end = (await status()).tasks;
    assert.deepEqual([end.done, end.failed, end.claimed, end.open], [9, 0, 0, 0]);
    assert.deepEqual(
      (await readdir(f.ws.p("backlog", "done"))).sort(),
      ["G-0", "G-1", "G-2", "N-0", "N-1", "N-2", "T-0", "T-1", "T-2"].map((id) => `${id}.md`),
    );
    for (const cmd of [["wal", "verify"], ["audit", "verify"], ["doctor"]]) {
      const v = await f.cli(cmd);
      assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
    }

    // Archived again: a new generation; the old one still restores to the noted instant.
    assert.equal((await f.cli(["dr", "archive", "--to", store, "--once"])).code, 0);
    const listed = await f.cli(["--json", "dr", "list", "--from", store, "--check"]);
    assert.equal(listed.code, 0, listed.stderr);
    const gens = JSON.parse(listed.stdout).generations as { generation: string; previous: string | null }[];
    assert.equal(gens.length, 2);
    assert.equal(gens[1]!.previous, gens[0]!.generation);
    const old = path.join(scratch.dir, "old", ".sdd");
    const r = await f.cli(["--json", "dr", "restore", "--from", store, "--at", at], old);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).generation, gens[0]!.generation);
    assert.deepEqual((await status(old)).tasks, then);
    const latest = await f.cli(
      ["--json", "dr", "restore", "--from", store, "--latest"],
      path.join(scratch.dir, "new", ".sdd"),
    );
    assert.equal(latest.code, 0, latest.stderr);
    assert.equal(JSON.parse(latest.stdout).generation, gens[1]!.generation);
    assert.equal((await status(path.join(scratch.dir, "new", ".sdd"))).tasks.done, 9);
  });
});
