/**
 * A write that fails while groups pipeline: the groups made durable before it are acknowledged
 * before its failure reaches anyone, and nothing is acknowledged after it. The child runs under
 * a file size limit (`ulimit -f`, in blocks of 512 bytes under dash), so a real write in the
 * middle of the run fails with EFBIG.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { WalWriter } from "../../src/wal/writer.js";
import { REPO_ROOT } from "../helpers.js";
import { assertAckedOnDisk, scratchWorkspace } from "./support/wal-helpers.js";

const SUPPORT = path.join(REPO_ROOT, "dist", "test", "wal", "support");

function runLimited<T>(
  sdd: string,
  runId: string,
  blocks: number,
  script = "limited-appender.js",
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "sh",
      [
        "-c",
        `ulimit -f ${blocks} && exec "$0" "$@"`,
        process.execPath,
        path.join(SUPPORT, script),
        sdd,
        runId,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`limited appender exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as T);
    });
  });
}

test("a write failing between pipelined groups: nothing is acknowledged after the failure", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    // Limits that fall in different groups of the run (a line is about 250 bytes).
    for (const [round, blocks] of [211, 307, 433, 590, 1000].entries()) {
      const runId = `run-limit-${round}`;
      const { events, late } = await runLimited<{ events: string[]; late: string }>(ws.root, runId, blocks);
      const firstRejection = events.findIndex((e) => e.startsWith("rej "));
      assert.ok(firstRejection > 0, `round ${round}: some appends were acknowledged before the failure`);
      const acked = new Map<number, string>();
      for (const [i, e] of events.entries()) {
        const [kind, seq, rest] = e.split(" ", 3);
        if (i >= firstRejection) {
          assert.equal(kind, "rej", `round ${round}: acknowledged after the failure: ${e}`);
          assert.match(e, /WalClosedError: .*failed closed.*EFBIG/);
          continue;
        }
        assert.equal(Number(seq), acked.size, `round ${round}: acknowledged in seq order, none skipped`);
        acked.set(Number(seq), rest);
      }
      assert.equal(late, "WalClosedError", "an append after the failure is rejected");
      // Reopened without the limit: the partial group is a torn tail, every acknowledged entry stays.
      const w = await WalWriter.open(ws, runId);
      await w.close();
      await assertAckedOnDisk(ws.walFile(runId), acked, `round ${round}`);
    }
  } finally {
    await cleanup();
  }
});

test("with a commit gate, a group durable before a failed write is acknowledged before the failure's rejections", async () => {
  const { ws, cleanup } = await scratchWorkspace();
  try {
    // 4 blocks of 512 bytes: the first entry fits, the second (over 8 KB) crosses the limit.
    const { events } = await runLimited<{ events: string[] }>(
      ws.root,
      "run-gated",
      4,
      "gated-limited-appender.js",
    );
    assert.equal(events.length, 3, events.join("\n"));
    assert.match(events[0], /^ack 0 /, "the gated group's acknowledgement comes first");
    assert.match(events[1], /^rej 1 WalClosedError: .*failed closed.*EFBIG/);
    assert.match(events[2], /^rej late WalClosedError: .*failed closed/);
    const w = await WalWriter.open(ws, "run-gated");
    await w.close();
    await assertAckedOnDisk(ws.walFile("run-gated"), new Map([[0, events[0].split(" ")[2]]]), "gated");
  } finally {
    await cleanup();
  }
});
