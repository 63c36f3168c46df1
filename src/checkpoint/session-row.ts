/**
 * Operator "where we are" rows: `sessions/<ts>-checkpoint.json`, in the Python row format
 * (timestamp epoch float, goal, completed_task_ids, in_flight_task_ids, next_steps, cost_spent,
 * git_sha) plus the checkpoint id they go with. Written atomically; never overwrite a row.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { orderedJson, PY_DEFAULT, PyFloat } from "../json/canonical.js";
import { asJsonObject } from "../json/object.js";
import type { OrchestratorState } from "../state/reducer.js";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";

export interface SessionRow {
  timestamp: number;
  goal: string | null;
  completed_task_ids: string[];
  in_flight_task_ids: string[];
  next_steps: string[];
  cost_spent: number;
  git_sha: string | null;
  checkpoint_id: string | null;
}

const MAX_NEXT_STEPS = 10;

export function sessionRowOf(
  state: OrchestratorState,
  opts: { goal?: string | null; checkpointId?: string | null; gitSha?: string | null; now?: Date },
): SessionRow {
  const completed: string[] = [];
  const inFlight: string[] = [];
  const next: string[] = [];
  for (const id of Object.keys(state.tasks).sort()) {
    const t = state.tasks[id];
    if (t.state === "done") completed.push(id);
    else if (t.state === "claimed") inFlight.push(id);
    else if (t.state === "open" && next.length < MAX_NEXT_STEPS) {
      const title = asJsonObject(t.spec)?.title;
      next.push(typeof title === "string" ? `${id}: ${title}` : id);
    }
  }
  return {
    timestamp: (opts.now ?? new Date()).getTime() / 1000,
    goal: opts.goal ?? null,
    completed_task_ids: completed,
    in_flight_task_ids: inFlight,
    next_steps: next,
    cost_spent: state.cost.cost_usd,
    git_sha: opts.gitSha ?? null,
    checkpoint_id: opts.checkpointId ?? null,
  };
}

function stampOf(d: Date): string {
  return d.toISOString().slice(0, 19).replace(/[-:]/g, ""); // 20260504T120000
}

/** Writes the row as `sessions/<ts>-checkpoint.json` (a suffix is added rather than overwrite). */
export async function writeSessionRow(ws: Workspace, row: SessionRow): Promise<string> {
  await durableMkdir(ws.sessionsDir);
  const stamp = stampOf(new Date(row.timestamp * 1000));
  let file = path.join(ws.sessionsDir, `${stamp}-checkpoint.json`);
  for (let n = 1; await exists(file); n++) file = path.join(ws.sessionsDir, `${stamp}-${n}-checkpoint.json`);
  // Python's json.dump: field order kept, default separators, floats stay floats.
  const body = {
    ...row,
    timestamp: new PyFloat(row.timestamp),
    cost_spent: new PyFloat(row.cost_spent),
  };
  await atomicWriteFile(file, orderedJson(body, PY_DEFAULT));
  return file;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
