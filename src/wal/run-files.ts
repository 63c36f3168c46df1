/**
 * The files of WAL runs in a `runtime/wal/` folder: a run's WAL `<run-id>.wal.jsonl` (named by
 * `Workspace.walFile`) and its closed marker `<run-id>.wal.closed`, read back to run ids, and the
 * runs a folder holds. Other files there (a torn tail's `.torn-*` sidecar, temp files) are no run.
 */
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { WAL_FILE_SUFFIX, isRunId, runIdProblem } from "../workspace/layout.js";

export { WAL_FILE_SUFFIX };

export const CLOSED_MARKER_SUFFIX = ".wal.closed";

/** `run-<UTC yyyymmddThhmmssSSS>Z-<4 hex>`. */
export function newRunId(now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.(\d{3})Z$/, "$1Z");
  return `run-${stamp}-${randomBytes(2).toString("hex")}`;
}

const RUN_ID_TIME = /^run-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-[0-9a-f]{4}$/;

/**
 * When a run was created, in epoch seconds, as `newRunId` wrote it into the id; null for a foreign
 * run id (e.g. `run-golden`).
 */
export function runIdCreatedAt(runId: string): number | null {
  const m = RUN_ID_TIME.exec(runId);
  if (!m) return null;
  const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const t = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  return Number.isFinite(t) ? t / 1000 : null;
}

/**
 * The run id of a WAL file name or path (`.../<run>.wal.jsonl`); undefined for any other file,
 * and for a name whose run part is no run id (`isRunId`): no writer of ours or Python's made it.
 */
export function runIdOfWalFile(nameOrPath: string): string | undefined {
  return stripSuffix(path.basename(nameOrPath), WAL_FILE_SUFFIX);
}

/** The run id of a closed marker's name (`<run>.wal.closed`); undefined for any other file (as `runIdOfWalFile`). */
export function runIdOfClosedMarker(name: string): string | undefined {
  return stripSuffix(path.basename(name), CLOSED_MARKER_SUFFIX);
}

/** The closed marker of `runId` in `walDir`. */
export function closedMarkerFile(walDir: string, runId: string): string {
  const problem = runIdProblem(runId);
  if (problem) throw new UserError(`${walDir}: ${problem}`, ExitCode.CORRUPT);
  return path.join(walDir, runId + CLOSED_MARKER_SUFFIX);
}

export interface WalRunFile {
  run_id: string;
  /** The WAL file's path (in the folder that was listed). */
  file: string;
}

/** The WAL runs among `names` (the entries of `walDir`), in the order given. */
export function walRunFilesIn(walDir: string, names: readonly string[]): WalRunFile[] {
  const out: WalRunFile[] = [];
  for (const name of names) {
    const run_id = runIdOfWalFile(name);
    if (run_id !== undefined) out.push({ run_id, file: path.join(walDir, name) });
  }
  return out;
}

/**
 * The WAL runs of `walDir` in folder order (sort them where order matters); none when the folder
 * does not exist. Other read errors are thrown.
 */
export async function listWalRunFiles(walDir: string): Promise<WalRunFile[]> {
  let names: string[];
  try {
    names = await readdir(walDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return walRunFilesIn(walDir, names);
}

function stripSuffix(name: string, suffix: string): string | undefined {
  const run = name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined;
  return isRunId(run) ? run : undefined;
}
