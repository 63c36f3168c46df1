/**
 * The files of WAL runs in a `runtime/wal/` folder: a run's WAL `<run-id>.wal.jsonl` (named by
 * `Workspace.walFile`) and its closed marker `<run-id>.wal.closed`, read back to run ids, and the
 * runs a folder holds. Other files there (a torn tail's `.torn-*` sidecar, temp files) are no run.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { WAL_FILE_SUFFIX } from "../workspace/layout.js";

export { WAL_FILE_SUFFIX };

export const CLOSED_MARKER_SUFFIX = ".wal.closed";

/** The run id of a WAL file name or path (`.../<run>.wal.jsonl`); undefined for any other file. */
export function runIdOfWalFile(nameOrPath: string): string | undefined {
  return stripSuffix(path.basename(nameOrPath), WAL_FILE_SUFFIX);
}

/** The run id of a closed marker's name (`<run>.wal.closed`); undefined for any other file. */
export function runIdOfClosedMarker(name: string): string | undefined {
  return stripSuffix(path.basename(name), CLOSED_MARKER_SUFFIX);
}

/** The closed marker of `runId` in `walDir`. */
export function closedMarkerFile(walDir: string, runId: string): string {
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
  return name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined;
}
