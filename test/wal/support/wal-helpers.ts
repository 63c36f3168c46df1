/** Helpers shared by the WAL tests: a fresh workspace, records, file access. */
import { readFile } from "node:fs/promises";
import { initWorkspace, type Workspace } from "../../../src/workspace/layout.js";
import type { WalRecord } from "../../../src/wal/entry.js";
import { GroupPacing } from "../../../src/wal/group-pacing.js";
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
