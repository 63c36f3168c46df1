/**
 * A burst of warnings of one kind (after a restore: thousands of lost agents, missing task files,
 * blocked tasks) is summarized by `start`: the first few and a count. `--verbose` prints every
 * one; `--json` lists them all under `warnings`.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { addTask } from "../../src/orchestrator/tasks.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

test("start summarizes a burst of warnings of one kind; --verbose and --json give every one", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-warnings-");
  try {
    const sdd = path.join(dir, ".sdd");
    const { workspace: ws } = await initWorkspace(sdd);
    const env = { XDG_STATE_HOME: path.join(dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
    const start = (...extra: string[]) =>
      runCli(["--sdd", sdd, "start", "--until-idle", "--poll", "20", ...extra], { cwd: dir, env });
    await addTask(ws, { id: "base", title: "base", command: "exit 1" });
    const blocked: string[] = [];
    for (let i = 0; i < 12; i++) {
      const id = `dep-${String(i).padStart(2, "0")}`;
      blocked.push(id);
      await addTask(ws, { id, title: id, command: "true", dependsOn: ["base"] });
    }
    const blockedLine = /^warning: task dep-\d\d cannot run: dependency base failed$/gm;

    const human = await start();
    assert.equal(human.code, 1, human.stderr);
    assert.match(human.stderr, /^warning: task base failed: exit code 1$/m, "a short group prints whole");
    assert.deepEqual(human.stderr.match(blockedLine), [
      "warning: task dep-00 cannot run: dependency base failed",
      "warning: task dep-01 cannot run: dependency base failed",
      "warning: task dep-02 cannot run: dependency base failed",
    ]);
    assert.match(
      human.stderr,
      /^warning: \.\.\. and 9 more "blocked task" warnings \(12 in all; --verbose prints every one, --json lists them under "warnings"\)$/m,
    );
    assert.ok(human.stderr.split("\n").length < 10, `a few lines, not one per task:\n${human.stderr}`);

    const verbose = await start("--verbose");
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.equal(verbose.stderr.match(blockedLine)?.length, 12);
    assert.doesNotMatch(verbose.stderr, /more "blocked task" warnings/);

    const json = await start("--json");
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as { warnings: string[] };
    assert.deepEqual(
      doc.warnings,
      blocked.map((id) => `task ${id} cannot run: dependency base failed`),
    );
    assert.equal(json.stderr.match(blockedLine)?.length, 3, "stderr stays summarized beside --json");
  } finally {
    await cleanup();
  }
});
