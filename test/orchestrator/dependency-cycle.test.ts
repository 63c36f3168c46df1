/**
 * Hand-written task files can form a dependency cycle (`task add` refuses one): `start` names its
 * tasks as unable to run instead of waiting for them forever, and `doctor` warns about it.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runDoctor } from "../../src/orchestrator/doctor.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const taskFile = (id: string, deps: string[]) =>
  `---\nid: ${id}\ntitle: ${id}\ncommand: "true"\ndepends_on: [${deps.join(", ")}]\n---\n`;

test("a dependency cycle in hand-written task files: start --until-idle names it and ends; doctor warns", async () => {
  const { ws, sdd, cli, cleanup } = await orchestratorWorkspace("bernstein-cycle-");
  try {
    const open = ws.backlogDir("open");
    await writeFile(path.join(open, "hw2.md"), taskFile("HW2", ["HW3"]));
    await writeFile(path.join(open, "hw3.md"), taskFile("HW3", ["HW2"]));
    // Waits on the cycle: blocked too, for the cycle's sake.
    await writeFile(path.join(open, "after.md"), taskFile("AFTER", ["HW2"]));
    await writeFile(path.join(open, "free.md"), taskFile("FREE", []));

    const before = (await runDoctor(sdd)).checks.find((c) => c.name === "dependencies")!;
    assert.equal(before.verdict, "warn", before.detail);
    assert.match(before.detail, /HW2 -> HW3 -> HW2/);

    const first = await cli("start", "--until-idle", "--poll", "20", "--json");
    assert.equal(first.code, 1, `tasks that became unable to run fail this run: ${first.stderr}`);
    const doc = JSON.parse(first.stdout) as {
      this_run: { done: number; failed: string[]; blocked: string[] };
    };
    assert.equal(doc.this_run.done, 1, "the task outside the cycle ran");
    assert.deepEqual([...doc.this_run.blocked].sort(), ["AFTER", "HW2", "HW3"]);
    assert.match(first.stderr, /task HW2 cannot run: dependency cycle HW2 -> HW3 -> HW2/);
    assert.match(first.stderr, /task HW3 cannot run: dependency cycle HW2 -> HW3 -> HW2/);
    assert.match(first.stderr, /task AFTER cannot run: dependency HW2 is blocked/);

    const again = await cli("start", "--until-idle", "--poll", "20");
    assert.equal(again.code, 0, "the same cycle does not fail every later run");
    assert.match(again.stderr, /task HW2 cannot run: dependency cycle HW2 -> HW3 -> HW2/, "still named");
  } finally {
    await cleanup();
  }
});
