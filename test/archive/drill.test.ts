/**
 * The logical-disaster drill of issue 16 with the real orchestrator: about 200 decisions, note
 * the time and `status --json`, then a task deletes half the backlog files and others fail;
 * `dr restore --from ARCHIVE --at` the noted time into a new folder shows the same status, and
 * `wal verify`, `audit verify` and `doctor` pass on it.
 */
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runMain, scratchDir } from "../helpers.js";
import { archiveFixture, statusState, type ArchiveFixture } from "./support/archive-workspace.js";

const taskFile = (id: string, command: string): string =>
  `---\nid: ${id}\ntitle: ${id}\ncommand: ${JSON.stringify(command)}\n---\n${id}\n`;

describe("logical-disaster drill: restore --at the instant before a task wrecked the backlog", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-drill-");
    f = await archiveFixture(scratch.dir);
  });
  after(async () => scratch.cleanup());

  /**
   * The CLI's main() in this process (runMain), for the runs after the first `dr archive --once`
   * that only ship, and the checks of the restored folder: their exit codes are the same as a
   * process's, and the drill's processes (the orchestrator, its agents, restore, status) are real.
   */
  const inProcess = (args: string[], sdd = f.sdd) =>
    runMain(["--sdd", sdd, ...args], { env: f.env, cwd: f.dir });

  it("status --json of the restored workspace equals the one taken at that instant", async () => {
    const store = path.join(scratch.dir, "store");
    for (let i = 0; i < 25; i++)
      await writeFile(f.ws.p("backlog", "open", `T-${i}.md`), taskFile(`T-${i}`, "true"));
    const first = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^Archiving .* once, plain$/m);
    const run = await f.cli(["start", "--until-idle", "--max-agents", "4"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((await inProcess(["dr", "archive", "--to", store, "--once"])).code, 0);
    const then = await f.cli(["--json", "status"]);
    assert.equal(then.code, 0);
    assert.ok(statusState(then.stdout).wal.seq >= 199, then.stdout);
    const at = new Date().toISOString();
    while (new Date().toISOString() === at); // the next decision is stamped after the noted instant

    const done = f.ws.p("backlog", "done");
    const wreck = `ls ${done}/*.md | head -n 12 | xargs rm`;
    await writeFile(f.ws.p("backlog", "open", "X-wreck.md"), taskFile("X-wreck", wreck));
    for (let i = 0; i < 3; i++)
      await writeFile(f.ws.p("backlog", "open", `X-fail-${i}.md`), taskFile(`X-fail-${i}`, "false"));
    await f.cli(["start", "--until-idle", "--max-agents", "4"]);
    assert.equal(
      (await readdir(done)).length,
      25 - 12 + 1,
      "the disaster deleted half the done tasks' files",
    );
    assert.equal((await inProcess(["dr", "archive", "--to", store, "--once"])).code, 0);

    const restored = path.join(scratch.dir, "restored", ".sdd");
    const r = await f.cli(["--json", "dr", "restore", "--from", store, "--at", at], restored);
    assert.equal(r.code, 0, r.stderr);
    const now = await f.cli(["--json", "status"], restored);
    assert.deepEqual(statusState(now.stdout), statusState(then.stdout));
    const back = (await readdir(path.join(restored, "backlog", "done"))).sort();
    assert.deepEqual(
      back,
      Array.from({ length: 25 }, (_, i) => `T-${i}.md`).sort(),
      "the deleted task files are back",
    );
    for (const cmd of [["wal", "verify"], ["audit", "verify"], ["doctor"]]) {
      const v = await inProcess(cmd, restored);
      assert.equal(v.code, 0, `${cmd.join(" ")}: ${v.stdout}${v.stderr}`);
    }
  });
});
