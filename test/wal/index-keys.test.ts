/**
 * Keys such as "1" after other keys: Python writes a dict's keys in insertion order, while a JS
 * object lists array-index keys first. Such a line is exactly as written (its tokens are as
 * Python prints them and its hash covers the sorted keys), and every reader of the chain must
 * take it as `wal verify` does.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { GENESIS_HASH, buildEntryWithLine, checkLine } from "../../src/wal/entry.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { runCli, scratchDir } from "../helpers.js";

/** The line Python writes for inputs {"b": 1, "1": 2, "task": ...}: "b" before "1". */
function pythonOrderedLines(count: number): string[] {
  let prev = GENESIS_HASH;
  const lines: string[] = [];
  for (let seq = 0; seq < count; seq++) {
    const record = { decision_type: "note", inputs: { b: 1, "1": 2, task: `T-${seq}` }, committed: true };
    const { entry, line } = buildEntryWithLine(record, seq, prev, 1795744701.5 + seq);
    const asPython = line.replace('"inputs":{"1":2,"b":1,', '"inputs":{"b":1,"1":2,');
    assert.notEqual(asPython, line);
    lines.push(asPython);
    prev = entry.entry_hash;
  }
  return lines;
}

test("checkLine takes a line whose index keys come after others, as Python writes them", () => {
  const [line] = pythonOrderedLines(1);
  const c = checkLine(line!.trimEnd());
  assert.equal(c.ok, true, c.ok ? "" : c.message);
});

test("wal verify, checkpoint, doctor and status read a Python WAL with index keys after others", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
    await writeFile(ws.walFile("run-py"), pythonOrderedLines(5).join(""));
    const env = { XDG_STATE_HOME: path.join(dir, "x") };
    for (const argv of [["wal", "verify"], ["checkpoint"], ["doctor"]]) {
      const r = await runCli(["--sdd", ws.root, ...argv], { env });
      assert.equal(r.code, 0, `${argv.join(" ")}: ${r.stdout}${r.stderr}`);
    }
    const status = await runCli(["--sdd", ws.root, "--json", "status"], { env });
    assert.equal(status.code, 0, status.stderr);
    assert.doesNotMatch(status.stdout, /could not be loaded/);
  } finally {
    await cleanup();
  }
});
