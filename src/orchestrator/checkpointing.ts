/**
 * The orchestrator's use of checkpoints (src/checkpoint/, owned by the recovery core): writing one
 * at the cadence and at stop, the newest one's summary for `status`, and doctor's check.
 */
import { newestValidCheckpoint, writeCheckpoint, type WrittenCheckpoint } from "../checkpoint/checkpoint.js";
import { sessionRowOf, writeSessionRow } from "../checkpoint/session-row.js";
import type { Workspace } from "../workspace/layout.js";
import type { DoctorCheck } from "./doctor-check.js";
import type { OrchestratorState } from "../state/reducer.js";

export interface CheckpointSummary {
  id: string;
  created_at: string;
  age_s: number;
  wal_position: unknown;
}

/** A checkpoint of the live state; at stop also the operator's "where we are" row. */
export async function checkpointState(
  ws: Workspace,
  state: OrchestratorState,
  opts: { sessionRow?: boolean } = {},
): Promise<WrittenCheckpoint> {
  const cp = await writeCheckpoint(ws, state);
  if (opts.sessionRow) {
    await writeSessionRow(
      ws,
      sessionRowOf(state, { checkpointId: cp.checkpoint_id, goal: "bernstein start" }),
    );
  }
  return cp;
}

export async function newestCheckpointInfo(ws: Workspace): Promise<CheckpointSummary | null> {
  const { valid } = await newestValidCheckpoint(ws);
  if (!valid) return null;
  const created = valid.checkpoint.metadata.created_at;
  return {
    id: valid.id,
    created_at: created,
    age_s: Math.max(0, (Date.now() - Date.parse(created)) / 1000),
    wal_position: valid.checkpoint.wal_position,
  };
}

/** Doctor: the newest checkpoint is valid (body hash, counts) and its WAL position exists with that hash. */
export async function newestCheckpointCheck(ws: Workspace): Promise<DoctorCheck> {
  const { valid, rejected } = await newestValidCheckpoint(ws);
  const base = { name: "checkpoint" };
  const ours = rejected.filter((r) => r.kind !== "not_ours");
  const foreign = rejected.filter((r) => r.kind === "not_ours");
  if (ours.length) {
    const r = ours[0];
    return {
      ...base,
      ok: false,
      verdict: "fail",
      detail: `newest checkpoint ${r.id} is not valid (${r.kind}): ${r.problem}${valid ? `; ${valid.id} is used instead` : ""}`,
      fix: "inspect it with `bernstein checkpoint show`; `bernstein checkpoint` writes a fresh one (the bad file is kept)",
    };
  }
  if (!valid && foreign.length) {
    return {
      ...base,
      ok: true,
      verdict: "warn",
      detail: `no checkpoint of ours; ignored ${foreign.map((r) => r.id).join(", ")} (${foreign[0].problem}); the state comes from the WAL alone`,
      fix: "`bernstein checkpoint` (or a `bernstein start`/`stop`) writes one",
    };
  }
  if (!valid)
    return {
      ...base,
      ok: true,
      verdict: "pass",
      detail: "no checkpoint yet (state comes from the WAL alone)",
      fix: "",
    };
  const p = valid.checkpoint.wal_position;
  return {
    ...base,
    ok: true,
    verdict: "pass",
    detail: `${valid.id} valid; covers ${p ? `${p.run_id}#${p.seq}` : "nothing yet"}, found in the WAL with that hash`,
    fix: "",
  };
}
