/** Helpers shared by the WAL tests: a fresh workspace, records, file access. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { initWorkspace, type Workspace } from "../../../src/workspace/layout.js";
import type { WalRecord } from "../../../src/wal/entry.js";
import { GroupPacing } from "../../../src/wal/group-pacing.js";
import { readWalEntries } from "../../../src/wal/reader.js";
import { scratchDir } from "../../helpers.js";

export async function scratchWorkspace(): Promise<{
  ws: Workspace;
  dir: string;
  cleanup: () => Promise<void>;
}> {
  const { dir, cleanup } = await scratchDir("bernstein-wal-");
  const { workspace } = await initWorkspace(`${dir}/.sdd`);
  return { ws: workspace, dir, cleanup };
}

export function record(i: number, committed = true): WalRecord {
  return {
    decision_type: committed ? "task_completed" : "task_claimed",
    inputs: { task_id: `T-${i}`, attempt: 1, title: `caf\u00e9 \u{1F680} ${i}` },
    output: committed ? { exit_code: 0, cost_usd: 0.125, ratio: 3, big: 2n ** 64n } : {},
    committed,
  };
}

export async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8");
  return text.split("\n").filter((l) => l !== "");
}

/** A fixed policy: every group pipelined (the sync on the thread pool, the next group first). */
export class AlwaysPipelined extends GroupPacing {
  override pipelining = true;
  override onGroupSynced(): void {
    this.pipelining = true;
  }
}

/** Every acknowledged entry (seq to its hash) is in the WAL file with that hash. */
export async function assertAckedOnDisk(
  file: string,
  acked: Map<number, string>,
  label: string,
): Promise<void> {
  let found = 0;
  for await (const { entry } of readWalEntries(file)) {
    const want = acked.get(entry.seq);
    if (want !== undefined) {
      assert.equal(entry.entry_hash, want, `${label}: seq ${entry.seq}`);
      found++;
    }
  }
  assert.equal(found, acked.size, `${label}: acknowledged entries missing`);
}
