/**
 * A child process for the merge crash test: `merge` runs one `task_merged` decision in a new run
 * (SIGKILLed wherever BERNSTEIN_CRASH_AT says); `recover` opens a new run, replays the pending
 * intents of earlier runs with the merge handler, then sweeps the worktree and branch of the task
 * (the cleanup a crash after the commit entry leaves undone). Prints one JSON line.
 */
import { fileURLToPath } from "node:url";
import { DecisionLog } from "../../../src/state/decisions.js";
import { emptyState } from "../../../src/state/reducer.js";
import { replayWal } from "../../../src/state/replay.js";
import type { WalEntry } from "../../../src/wal/entry.js";
import { newRunId, WalWriter } from "../../../src/wal/writer.js";
import { openWorkspace } from "../../../src/workspace/layout.js";
import {
  cleanUpAfterMerge,
  decideMerge,
  type MergeInputs,
  type MergeSettings,
} from "../../../src/orchestrator/git/merge-decision.js";
import { containsCommit } from "../../../src/orchestrator/git/repo.js";
import { taskWorktreePath } from "../../../src/orchestrator/git/worktree.js";
import { TEST_IDENTITY } from "./git-repo.js";

export interface Job {
  mode: "merge" | "recover";
  sdd: string;
  repo: string;
  inputs: MergeInputs;
}

function settingsFor(job: Job, inputs: MergeInputs): MergeSettings {
  return {
    repo: job.repo,
    worktreePath: taskWorktreePath(job.sdd, inputs.task_id, inputs.attempt),
    title: `change for ${inputs.task_id}`,
    strategy: "merge",
    identity: TEST_IDENTITY,
    date: "2026-01-02T00:00:00Z",
  };
}

/**
 * The driver's work, in the calling process: for the runs the test does not kill, where a child
 * would only add a Node start-up. Returns the JSON line the child prints.
 */
export async function runMergeJob(job: Job): Promise<string> {
  const ws = await openWorkspace(job.sdd);
  const wal = await WalWriter.open(ws, newRunId());
  const log = new DecisionLog({ ws, wal, audit: null, state: emptyState() });
  let result: unknown;
  if (job.mode === "merge") {
    result = await decideMerge(log, job.inputs, settingsFor(job, job.inputs));
  } else {
    const handler = async (entry: WalEntry): Promise<void> => {
      const inputs = entry.inputs as unknown as MergeInputs;
      await decideMerge(log, inputs, settingsFor(job, inputs), true);
    };
    const summary = await replayWal(ws, {
      currentRunId: wal.runId,
      handlers: { task_merged: handler },
      writer: wal,
    });
    const merged = await containsCommit(job.repo, job.inputs.target_branch, job.inputs.head_commit);
    await cleanUpAfterMerge(job.inputs, settingsFor(job, job.inputs), merged);
    result = { replayed: summary.replayed, failed: summary.failed, warnings: summary.warnings };
  }
  await wal.close({ markClosed: true, reason: "test" });
  return JSON.stringify(result) + "\n";
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  process.stdout.write(await runMergeJob(JSON.parse(process.argv[2]!) as Job));
