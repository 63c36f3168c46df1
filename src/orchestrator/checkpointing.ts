/**
 * The orchestrator's use of checkpoints (src/checkpoint/, owned by the recovery core): writing one
 * at the cadence and at stop, the newest one's summary for `status`, and doctor's check.
 */
import {
  listCheckpointFiles,
  newestValidCheckpoint,
  rejectedCheckpointLine,
  validateCheckpointFile,
  writeCheckpoint,
  type WrittenCheckpoint,
} from "../checkpoint/checkpoint.js";
import { sessionRowOf, writeSessionRow } from "../checkpoint/session-row.js";
import type { Workspace } from "../workspace/layout.js";
import { shown } from "../workspace/shown-path.js";
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

/** A checkpoint newer than the one the state comes from that was passed over, with why. */
export interface RejectedCheckpoint {
  id: string;
  file: string;
  kind: string;
  problem: string;
  /** Which file, why, and what the state comes from instead. */
  message: string;
}

/** The checkpoint the state comes from, and the newer ones passed over. */
export async function newestCheckpointInfo(
  ws: Workspace,
): Promise<{ checkpoint: CheckpointSummary | null; rejected: RejectedCheckpoint[] }> {
  const { valid, rejected } = await newestValidCheckpoint(ws);
  const passedOver = rejected.map((r) => ({
    id: r.id,
    file: r.file,
    kind: r.kind,
    problem: r.problem,
    message: rejectedCheckpointLine(r, valid?.id),
  }));
  if (!valid) return { checkpoint: null, rejected: passedOver };
  const created = valid.checkpoint.metadata.created_at;
  return {
    checkpoint: {
      id: valid.id,
      created_at: created,
      age_s: Math.max(0, (Date.now() - Date.parse(created)) / 1000),
      wal_position: valid.checkpoint.wal_position,
    },
    rejected: passedOver,
  };
}

/**
 * Doctor: the newest checkpoint is valid (body hash, counts) and its WAL position exists with that
 * hash. An older one of ours that is not valid warns: the state does not come from it, but a
 * damaged file in the folder is worth knowing of (a `start` after a bad newest one writes a newer
 * good one, which would otherwise hide the bad one).
 */
export async function newestCheckpointCheck(ws: Workspace): Promise<DoctorCheck> {
  const { valid, rejected } = await newestValidCheckpoint(ws);
  const base = { name: "checkpoint" };
  const ours = rejected.filter((r) => r.kind !== "not_ours");
  const foreign = rejected.filter((r) => r.kind === "not_ours");
  if (ours.length) {
    return {
      ...base,
      ok: false,
      verdict: "fail",
      detail: ours
        .map((r, i) => `${i ? "" : "newest "}checkpoint ${rejectedCheckpointLine(r, valid?.id)}`)
        .join("; "),
      fix: `inspect it with \`bernstein checkpoint show ${ours[0].id}\`; \`bernstein checkpoint\` writes a fresh one (the bad file is kept)`,
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
  const covers = `${valid.id} valid; covers ${p ? `${p.run_id}#${p.seq}` : "nothing yet"}, found in the WAL with that hash`;
  const older: string[] = [];
  for (const c of (await listCheckpointFiles(ws)).filter((c) => c.ours && c.id < valid.id)) {
    const r = await validateCheckpointFile(ws, c.file);
    if (!r.ok) older.push(`${shown(r.file)} (${r.kind}): ${r.problem}`);
  }
  if (older.length)
    return {
      ...base,
      ok: true,
      verdict: "warn",
      detail: `${covers}; older checkpoint(s) not valid, not used: ${older.join("; ")}`,
      fix: "the state does not need them (a newer checkpoint is valid); look for the damage's cause (disk, a hand edit), then remove them or let retention prune them",
    };
  return { ...base, ok: true, verdict: "pass", detail: covers, fix: "" };
}
