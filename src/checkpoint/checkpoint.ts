/**
 * Checkpoints: `runtime/checkpoints/checkpoint-<id>.json`, a snapshot of the reduced state plus the
 * WAL position it covers, written atomically (temp file, fsync, rename, folder fsync) so a crash
 * at any moment leaves the previous checkpoint untouched.
 *
 * Body (canonical JSON, one line): `format`, `metadata` {checkpoint_id, created_at, bernstein_version,
 * task_count, completed_count, failed_count, cost_usd, plan_file}, `task_graph`, `agent_sessions`,
 * `cost_accumulator`, `wal_position` {run_id, seq, entry_hash} (null: covers nothing), and
 * `body_sha256` = sha256 of the canonical JSON of everything else.
 *
 * A checkpoint is valid when it parses, is ours (format), its body hash matches, its id matches
 * its file name, its counts match its task graph, and the WAL entry at wal_position exists and
 * has that hash (found by reading the run's WAL backwards from its end).
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { canonicalJson, parseJson, type JsonValue } from "../json/canonical.js";
import { asJsonObject, asNumber, type JsonObject } from "../json/object.js";
import {
  stateCounts,
  type AgentSession,
  type CostAccumulator,
  type OrchestratorState,
  type TaskRecord,
  type WalPositionRef,
} from "../state/reducer.js";
import { VERSION } from "../version.js";
import { atomicWriteFile, durableMkdir, durableUnlink, removeDeadTemps } from "../workspace/durable.js";
import { isRunId, type Workspace } from "../workspace/layout.js";
import { shown } from "../workspace/shown-path.js";
import { locateWalEntry, type LocatedEntry } from "./wal-position.js";

export const CHECKPOINT_FORMAT = "bernstein-checkpoint/1";
export const DEFAULT_RETENTION = 20;
const FILE_RE = /^checkpoint-(.+)\.json$/;
/** Our ids: `cp-<UTC yyyymmddThhmmssSSS>Z-<4 hex>`, so names sort by creation time. */
const OUR_ID_RE = /^cp-\d{8}T\d{9}Z-[0-9a-f]{4}$/;

export interface CheckpointMetadata {
  checkpoint_id: string;
  created_at: string;
  bernstein_version: string;
  task_count: number;
  completed_count: number;
  failed_count: number;
  cost_usd: number;
  plan_file: string | null;
}

export interface Checkpoint {
  format: typeof CHECKPOINT_FORMAT;
  metadata: CheckpointMetadata;
  task_graph: Record<string, TaskRecord>;
  agent_sessions: Record<string, AgentSession>;
  cost_accumulator: CostAccumulator;
  wal_position: WalPositionRef | null;
  body_sha256: string;
}

export function checkpointFile(ws: Workspace, id: string): string {
  return path.join(ws.checkpointsDir, `checkpoint-${id}.json`);
}

export function newCheckpointId(now = new Date()): string {
  const iso = now.toISOString(); // 2026-11-27T02:24:35.123Z
  const stamp = iso.slice(0, 19).replace(/[-:]/g, "") + iso.slice(20, 23);
  return `cp-${stamp}Z-${randomBytes(2).toString("hex")}`;
}

function bodyHash(body: Record<string, unknown>): string {
  const { body_sha256: _ignored, ...rest } = body;
  return createHash("sha256").update(canonicalJson(rest), "utf8").digest("hex");
}

export interface WriteCheckpointOptions {
  planFile?: string | null;
  /** Keep the newest N of our checkpoints (default 20); 0 keeps all. */
  retain?: number;
  now?: Date;
}

export interface WrittenCheckpoint {
  checkpoint_id: string;
  file: string;
  metadata: CheckpointMetadata;
  wal_position: WalPositionRef | null;
  /** Older checkpoints removed by retention (file names). */
  pruned: string[];
  /** Temp files of interrupted writes by processes that are gone, removed (never a checkpoint). */
  removed_temp: string[];
}

/** Writes a checkpoint of `state` atomically, then applies retention. */
export async function writeCheckpoint(
  ws: Workspace,
  state: OrchestratorState,
  opts: WriteCheckpointOptions = {},
): Promise<WrittenCheckpoint> {
  const now = opts.now ?? new Date();
  const id = newCheckpointId(now);
  const counts = stateCounts(state);
  const metadata: CheckpointMetadata = {
    checkpoint_id: id,
    created_at: now.toISOString(),
    bernstein_version: VERSION,
    task_count: counts.task_count,
    completed_count: counts.completed_count,
    failed_count: counts.failed_count,
    cost_usd: state.cost.cost_usd,
    plan_file: opts.planFile ?? null,
  };
  const body: Omit<Checkpoint, "body_sha256"> = {
    format: CHECKPOINT_FORMAT,
    metadata,
    task_graph: state.tasks,
    agent_sessions: state.agent_sessions,
    cost_accumulator: state.cost,
    wal_position: state.wal_position,
  };
  const full = { ...body, body_sha256: bodyHash(body) };
  const file = checkpointFile(ws, id);
  let removedTemp: string[];
  try {
    await durableMkdir(ws.checkpointsDir);
    // Temp files of checkpoint writers that died mid-write.
    removedTemp = await removeDeadTemps(ws.checkpointsDir, (name) => FILE_RE.test(name));
    await atomicWriteFile(file, canonicalJson(full) + "\n");
  } catch (err) {
    throw new Error(`checkpoint: writing ${file}: ${(err as Error).message}`, { cause: err });
  }
  const pruned = await applyRetention(ws, opts.retain ?? DEFAULT_RETENTION);
  return {
    checkpoint_id: id,
    file,
    metadata,
    wal_position: state.wal_position,
    pruned,
    removed_temp: removedTemp,
  };
}

export interface CheckpointListing {
  id: string;
  file: string;
  /** Written by us (id pattern); foreign files are never pruned. */
  ours: boolean;
}

/** Every checkpoint file, newest first (by name: our ids sort by creation time). */
export async function listCheckpointFiles(ws: Workspace): Promise<CheckpointListing[]> {
  const names = await readdir(ws.checkpointsDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [] as string[];
    throw err;
  });
  const out: CheckpointListing[] = [];
  for (const name of names) {
    const m = FILE_RE.exec(name);
    if (!m) continue;
    out.push({ id: m[1], file: path.join(ws.checkpointsDir, name), ours: OUR_ID_RE.test(m[1]) });
  }
  // Ours first by id (time), newest first; foreign ones after them, by name.
  return out.sort((a, b) => {
    if (a.ours !== b.ours) return a.ours ? -1 : 1;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  });
}

/** Keeps the newest `retain` of our checkpoints; removes older ones durably. Returns removed names. */
export async function applyRetention(ws: Workspace, retain: number): Promise<string[]> {
  if (retain <= 0) return [];
  const ours = (await listCheckpointFiles(ws)).filter((c) => c.ours);
  const pruned: string[] = [];
  for (const old of ours.slice(retain)) {
    await durableUnlink(old.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    pruned.push(path.basename(old.file));
  }
  return pruned;
}

export type CheckpointProblemKind = "unreadable" | "not_ours" | "corrupt" | "wal_mismatch";

export type CheckpointCheck =
  | { ok: true; id: string; file: string; checkpoint: Checkpoint; located?: LocatedEntry }
  | {
      ok: false;
      id: string;
      file: string;
      kind: CheckpointProblemKind;
      problem: string;
      metadata?: JsonObject;
    };

/** Reads and validates one checkpoint file, including its WAL position. Never throws. */
export async function validateCheckpointFile(ws: Workspace, file: string): Promise<CheckpointCheck> {
  const read = await readCheckpointFile(file);
  if (!read.ok) return read;
  const p = read.checkpoint.wal_position;
  if (p === null) return read;
  const located = await locateWalEntry(ws.walFile(p.run_id), p.seq, p.entry_hash);
  if (!located.ok) {
    return {
      ok: false,
      id: read.id,
      file,
      kind: "wal_mismatch",
      problem: `wal_position ${p.run_id}#${p.seq}: ${located.problem}`,
      metadata: read.checkpoint.metadata as unknown as JsonObject,
    };
  }
  return { ...read, located: located.located };
}

/**
 * Reads one checkpoint file and checks everything but its WAL position (format, body hash, id,
 * counts, the position's shape). Never throws.
 */
export async function readCheckpointFile(file: string): Promise<CheckpointCheck> {
  const id = FILE_RE.exec(path.basename(file))?.[1] ?? path.basename(file);
  const fail = (kind: CheckpointProblemKind, problem: string, metadata?: JsonObject): CheckpointCheck => ({
    ok: false,
    id,
    file,
    kind,
    problem,
    metadata,
  });
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    return fail("unreadable", `cannot read: ${(err as Error).message}`);
  }
  let parsed: JsonValue;
  try {
    parsed = parseJson(text);
  } catch (err) {
    return fail("corrupt", `not valid JSON (${(err as Error).message}): truncated or damaged`);
  }
  const body = asJsonObject(parsed);
  if (!body) return fail("not_ours", "not a JSON object");
  const metadata = asJsonObject(body.metadata);
  if (body.format !== CHECKPOINT_FORMAT) {
    return fail(
      "not_ours",
      `not a ${CHECKPOINT_FORMAT} checkpoint (no format field: a foreign or Python checkpoint); not used`,
      metadata,
    );
  }
  if (typeof body.body_sha256 !== "string") return fail("corrupt", "no body_sha256", metadata);
  const computed = bodyHash(body);
  if (computed !== body.body_sha256) {
    return fail(
      "corrupt",
      `body hash mismatch (file says ${body.body_sha256.slice(0, 12)}…, content ${computed.slice(0, 12)}…)`,
      metadata,
    );
  }
  if (!metadata || metadata.checkpoint_id !== id) {
    return fail("corrupt", `metadata.checkpoint_id does not match the file name (${id})`, metadata);
  }
  const tasks = asJsonObject(body.task_graph);
  const sessions = asJsonObject(body.agent_sessions);
  const cost = asJsonObject(body.cost_accumulator);
  if (!tasks || !sessions || !cost || asNumber(cost.cost_usd) === undefined) {
    return fail("corrupt", "task_graph, agent_sessions or cost_accumulator missing", metadata);
  }
  const checkpoint = body as unknown as Checkpoint;
  const counts = stateCounts({
    tasks: checkpoint.task_graph,
    agent_sessions: checkpoint.agent_sessions,
    cost: checkpoint.cost_accumulator,
    wal_position: null,
  });
  for (const k of ["task_count", "completed_count", "failed_count"] as const) {
    if (asNumber(metadata[k]) !== counts[k]) {
      return fail(
        "corrupt",
        `metadata.${k} ${String(metadata[k])} does not match the task graph (${counts[k]})`,
        metadata,
      );
    }
  }
  const pos = body.wal_position;
  if (pos === null) return { ok: true, id, file, checkpoint };
  const p = asJsonObject(pos);
  if (
    !p ||
    !isRunId(p.run_id) ||
    typeof p.seq !== "number" ||
    !Number.isInteger(p.seq) ||
    p.seq < 0 ||
    typeof p.entry_hash !== "string"
  ) {
    return fail("corrupt", "wal_position is not {run_id, seq, entry_hash}", metadata);
  }
  return { ok: true, id, file, checkpoint };
}

/** The newest valid checkpoint, and a problem line for each newer one that is not valid. */
export async function newestValidCheckpoint(ws: Workspace): Promise<{
  valid?: Extract<CheckpointCheck, { ok: true }>;
  rejected: Extract<CheckpointCheck, { ok: false }>[];
}> {
  const rejected: Extract<CheckpointCheck, { ok: false }>[] = [];
  for (const c of await listCheckpointFiles(ws)) {
    const check = await validateCheckpointFile(ws, c.file);
    if (check.ok) return { valid: check, rejected };
    rejected.push(check);
  }
  return { rejected };
}

/**
 * What an operator needs to know of a checkpoint that was passed over: which file, why, and what
 * the state came from instead (the WAL is the truth, so a fallback is safe, but never silent).
 * Callers say "checkpoint" or "newest checkpoint" before it.
 */
export function rejectedCheckpointLine(
  r: Pick<Extract<CheckpointCheck, { ok: false }>, "file" | "kind" | "problem">,
  usedId: string | undefined,
): string {
  const what = r.kind === "not_ours" ? "is ignored" : `is not valid (${r.kind})`;
  const instead = usedId
    ? `the older checkpoint ${usedId} is used instead`
    : "no valid checkpoint: the state is replayed from the WAL alone";
  return `${shown(r.file)} ${what}: ${r.problem}; ${instead}`;
}

/** The state a checkpoint holds. */
export function stateOfCheckpoint(cp: Checkpoint): OrchestratorState {
  return {
    tasks: cp.task_graph,
    agent_sessions: cp.agent_sessions,
    cost: cp.cost_accumulator,
    wal_position: cp.wal_position,
  };
}
