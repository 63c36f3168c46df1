/**
 * Rollback detection: a WAL must still hold every position that something durable recorded it had
 * reached. A hash chain alone cannot show that its newest entries were cut off the end (every
 * prefix of a valid chain is valid), so the end is compared with the positions written elsewhere:
 *
 *  - a run's closed marker (`<run>.wal.closed`: `last_seq`, `last_hash`): a closed run's WAL must
 *    end exactly there;
 *  - every checkpoint of ours (`wal_position`): the WAL must reach it, with that hash when the
 *    position is the WAL's last entry (and for the newest checkpoint, wherever it is);
 *  - every backup record with positions (`runs/backups.jsonl` `wal_positions`): the same.
 *
 * An unclosed run proves less: a torn tail after a crash is legitimate (its bytes were never
 * acknowledged), but a run may never end before a position one of those records names. A
 * follower's acknowledgement is not recorded in the leader's workspace, so it cannot be compared
 * here (docs/wal.md "Rollback").
 *
 * Only the end of each WAL is read (`readTailPosition`), once per run, plus, for the newest
 * checkpoint, the lines back to its position.
 *
 * The runs are also compared with each other: a run that repeats another's entries (a copied run
 * file, `repeatedRuns`) is as dangerous as a rolled-back one, its decisions counted twice by the
 * state, and no chain check of a single run can see it. Every check of all runs (`wal verify`,
 * `status`, `doctor`, `start`, `dr verify`) reads this report, so it is found here, from each
 * run's first line.
 */
import { readdir } from "node:fs/promises";
import { readCheckpointFile, listCheckpointFiles } from "../checkpoint/checkpoint.js";
import { locateWalEntry } from "../checkpoint/wal-position.js";
import { readBackupLog, type BackupLogProblem } from "./backup-log.js";
import type { Workspace } from "../workspace/layout.js";
import {
  describeRepeatedRun,
  listRuns,
  readTailPosition,
  repeatedRuns,
  type TailPosition,
} from "../wal/reader.js";
import { readClosedMarker } from "../wal/recovery.js";
import { runIdOfClosedMarker } from "../wal/run-files.js";

export type RollbackKind =
  /** The WAL ends before the recorded position. */
  | "truncated"
  /** The WAL holds another entry at the recorded position, or goes on after its closed marker. */
  | "diverged"
  /** The recorded run has no WAL file at all. */
  | "missing_run"
  /** The run's closed marker is there but unreadable: the end it recorded cannot be compared. */
  | "corrupt_marker"
  /** The run begins with another run's entries: a copy of it (`recorded_by` names the other). */
  | "repeated_run";

export type RollbackEvidence = "closed_marker" | "checkpoint" | "backup" | "run";

export interface WalRollback {
  run_id: string;
  kind: RollbackKind;
  evidence: RollbackEvidence;
  /** Which record: the marker's file name, the checkpoint id, the backup's location and time. */
  recorded_by: string;
  /** null: not known (a corrupt closed marker). */
  expected_seq: number | null;
  expected_hash: string | null;
  /** The WAL's newest valid entry (-1: empty; null: no WAL file). */
  wal_last_seq: number | null;
  wal_last_hash: string | null;
  /** What is wrong, without the run id (callers name the run). */
  message: string;
}

export interface RollbackReport {
  rollbacks: WalRollback[];
  /** How many records were compared. */
  checked: { closed_markers: number; checkpoints: number; backup_positions: number };
  /** Lines of `runs/backups.jsonl` that are not rows: positions they may hold were not compared. */
  unreadable_backup_rows: BackupLogProblem[];
}

interface Expected {
  run_id: string;
  seq: number;
  entry_hash: string;
  evidence: RollbackEvidence;
  recorded_by: string;
}

/**
 * Compares the end of every WAL (or of `runId`'s only) with the positions recorded for it.
 * Throws only when a folder cannot be read; content problems are returned.
 */
export async function findWalRollbacks(
  ws: Workspace,
  opts: { runId?: string } = {},
): Promise<RollbackReport> {
  const tails = new Map<string, TailPosition | null>();
  const tailOf = async (runId: string): Promise<TailPosition | null> => {
    if (!tails.has(runId)) {
      tails.set(
        runId,
        await readTailPosition(ws.walFile(runId)).catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return null;
          throw err;
        }),
      );
    }
    return tails.get(runId)!;
  };
  const wanted = (runId: string) => opts.runId === undefined || opts.runId === runId;
  // One finding per run and kind of evidence: the most demanding record (the highest seq).
  const found = new Map<string, WalRollback>();
  const report: RollbackReport = {
    rollbacks: [],
    checked: { closed_markers: 0, checkpoints: 0, backup_positions: 0 },
    unreadable_backup_rows: [],
  };
  const note = (r: WalRollback) => {
    const key = `${r.run_id}\u0000${r.evidence}`;
    const had = found.get(key);
    if (!had || (r.expected_seq ?? -1) > (had.expected_seq ?? -1)) found.set(key, r);
  };

  // 1. Closed markers: the WAL ends exactly at the marker.
  for (const name of await readdir(ws.walDir).catch(() => [] as string[])) {
    const runId = runIdOfClosedMarker(name);
    if (runId === undefined || !wanted(runId)) continue;
    const m = await readClosedMarker(ws, runId);
    if (m && "corrupt" in m) {
      report.checked.closed_markers++;
      const tail = await tailOf(runId);
      note({
        run_id: runId,
        kind: "corrupt_marker",
        evidence: "closed_marker",
        recorded_by: name,
        expected_seq: null,
        expected_hash: null,
        wal_last_seq: tail ? tail.last_seq : null,
        wal_last_hash: tail ? tail.last_hash : null,
        message:
          `its closed marker ${name} is corrupt (${m.corrupt}): the end it recorded is lost, so a rollback ` +
          `of the run cannot be ruled out; restore a good copy with \`bernstein dr restore\`, or, once the ` +
          `WAL is known complete, move the marker aside`,
      });
      continue;
    }
    // A marker that does not record its tail (foreign, or written when the tail was unreadable)
    // proves nothing about the end.
    if (!m || !Number.isInteger(m.last_seq) || typeof m.last_hash !== "string" || m.last_hash === "")
      continue;
    report.checked.closed_markers++;
    const exp: Expected = {
      run_id: runId,
      seq: m.last_seq,
      entry_hash: m.last_hash,
      evidence: "closed_marker",
      recorded_by: name,
    };
    const tail = await tailOf(runId);
    if (!tail && m.last_seq < 0) continue; // an empty run whose (empty) file is gone
    const problem =
      tail && tail.last_seq > m.last_seq
        ? rollback(exp, tail, "diverged", `the WAL goes on to seq ${tail.last_seq} after it`)
        : compare(exp, tail);
    if (problem) note(problem);
  }

  // 2. Checkpoints: the WAL reaches each one's position.
  let newest = true;
  for (const c of await listCheckpointFiles(ws)) {
    if (!c.ours) continue;
    const read = await readCheckpointFile(c.file);
    if (!read.ok) continue; // a damaged checkpoint is the checkpoint check's to report
    const p = read.checkpoint.wal_position;
    const isNewest = newest;
    newest = false;
    if (!p || !wanted(p.run_id)) continue;
    report.checked.checkpoints++;
    const exp: Expected = { ...p, evidence: "checkpoint", recorded_by: `checkpoint ${c.id}` };
    const tail = await tailOf(p.run_id);
    const problem = compare(exp, tail);
    if (problem) note(problem);
    else if (isNewest && tail && p.seq < tail.last_seq) {
      // The position loading starts from: the entry there must be the one checkpointed.
      const located = await locateWalEntry(ws.walFile(p.run_id), p.seq, p.entry_hash);
      if (!located.ok && located.code === "hash_mismatch") {
        note(rollback(exp, tail, "diverged", located.problem));
      }
    }
  }

  // 3. Backup records: the WAL reaches each archive's position.
  for await (const row of readBackupLog(ws, report.unreadable_backup_rows)) {
    const positions = row.wal_positions;
    if (typeof positions !== "object" || positions === null) continue;
    for (const [runId, pos] of Object.entries(positions)) {
      if (!pos || !wanted(runId) || !Number.isInteger(pos.seq) || typeof pos.entry_hash !== "string")
        continue;
      report.checked.backup_positions++;
      const exp: Expected = {
        run_id: runId,
        seq: pos.seq,
        entry_hash: pos.entry_hash,
        evidence: "backup",
        recorded_by: `backup ${row.location} (${row.created_at})`,
      };
      const problem = compare(exp, await tailOf(runId));
      if (problem) note(problem);
    }
  }

  // 4. The runs themselves: no two share an entry.
  for (const r of repeatedRuns(await listRuns(ws))) {
    if (!wanted(r.run_id) && !wanted(r.same_as)) continue;
    const tail = await tailOf(r.run_id);
    note({
      run_id: r.run_id,
      kind: "repeated_run",
      evidence: "run",
      recorded_by: r.same_as,
      expected_seq: 0,
      expected_hash: r.entry_hash,
      wal_last_seq: tail ? tail.last_seq : null,
      wal_last_hash: tail ? tail.last_hash : null,
      message: describeRepeatedRun(r),
    });
  }

  report.rollbacks = [...found.values()].sort((a, b) =>
    a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : (a.expected_seq ?? -1) - (b.expected_seq ?? -1),
  );
  return report;
}

/** The WAL must reach the expected position, with its hash when that is the last entry. */
function compare(exp: Expected, tail: TailPosition | null): WalRollback | undefined {
  if (!tail) return rollback(exp, null, "missing_run", "the run has no WAL file");
  if (tail.last_seq < exp.seq) {
    const lost =
      tail.last_seq + 1 === exp.seq ? `entry ${exp.seq} is` : `entries ${tail.last_seq + 1}..${exp.seq} are`;
    return rollback(exp, tail, "truncated", `the WAL ends at seq ${tail.last_seq}: ${lost} missing`);
  }
  if (tail.last_seq === exp.seq && tail.last_hash !== exp.entry_hash) {
    return rollback(
      exp,
      tail,
      "diverged",
      `the WAL's entry ${exp.seq} has hash ${tail.last_hash.slice(0, 12)}…, not ${exp.entry_hash.slice(0, 12)}…`,
    );
  }
  return undefined;
}

function rollback(exp: Expected, tail: TailPosition | null, kind: RollbackKind, why: string): WalRollback {
  const who = exp.evidence === "closed_marker" ? "its closed marker" : exp.recorded_by;
  return {
    run_id: exp.run_id,
    kind,
    evidence: exp.evidence,
    recorded_by: exp.recorded_by,
    expected_seq: exp.seq,
    expected_hash: exp.entry_hash,
    wal_last_seq: tail ? tail.last_seq : null,
    wal_last_hash: tail ? tail.last_hash : null,
    message: `${who} records seq ${exp.seq}, but ${why}`,
  };
}
