/**
 * A run's chain as `start` will treat it (docs/wal.md): on a run a crash left open (no closed
 * marker), everything after the newest valid line is a torn tail that the writer's reopen cuts
 * to a `.torn` sidecar, not a break; a bad line with a valid line after it, or any bad line of a
 * closed run, is damage. `wal verify`, `doctor` and `status` give this one verdict.
 */
import type { Workspace } from "../workspace/layout.js";
import { readLock } from "../workspace/lock.js";
import type { VerifyResult } from "./chain.js";
import { readTailPosition, verifyWal, type RunInfo, type VerifyOptions } from "./reader.js";
import { readClosedMarker } from "./recovery.js";

/** The torn tail of an open run: what `start` cuts. */
export interface TornTail {
  /** The newest valid entry, where the chain ends intact (-1: none). */
  after_seq: number;
  /** The first line of the tail (1-based). */
  line: number;
  /** Byte offset where the tail begins, and its length, as read before the chain. */
  offset: number;
  bytes: number;
  /** The first bad line's problem. */
  kind: string;
  message: string;
  /**
   * A live orchestrator held the workspace lock: the tail is most likely a line it is writing
   * (caught between its write and its newline), which it finishes, not a crash's for start to cut.
   */
  orchestrator_running: boolean;
}

export interface RunVerdict {
  /** verifyWal's result, every line counted. */
  result: VerifyResult;
  /** Set when the only problems lie after the newest valid line of an open run. */
  torn_tail?: TornTail;
}

/**
 * Verifies a run's chain and tells a torn tail from damage. The end of an open run is read
 * before its chain: what an orchestrator appends meanwhile lies after it, and a line still
 * being written is not a break.
 */
export async function verifyRun(
  ws: Workspace,
  run: Pick<RunInfo, "run_id" | "file">,
  opts: VerifyOptions = {},
): Promise<RunVerdict> {
  const open = !(await readClosedMarker(ws, run.run_id));
  // A file that cannot be read has no tail to cut: verifyWal reports it at its line.
  const tail = open ? await readTailPosition(run.file).catch(() => undefined) : undefined;
  const result = await verifyWal(run.file, run.run_id, opts);
  const first = result.errors[0];
  // One entry per line, seq from 0: the newest valid entry is on line last_seq + 1.
  if (!tail || !first || first.line <= tail.last_seq + 1) return { result };
  return {
    result,
    torn_tail: {
      after_seq: tail.last_seq,
      line: first.line,
      offset: tail.valid_end,
      bytes: tail.size - tail.valid_end,
      kind: first.kind,
      message: first.message,
      orchestrator_running: (await readLock(ws)).state === "held",
    },
  };
}

/** The warning naming a torn tail, in the words of every command that reports one. */
export function describeTornTail(runId: string, t: TornTail): string {
  if (t.orchestrator_running)
    return `${runId}: a line being written: ${t.bytes} bytes after seq ${t.after_seq} (line ${t.line}) not yet complete while the orchestrator runs; the chain is intact up to seq ${t.after_seq}`;
  return `${runId}: torn tail of ${t.bytes} bytes after seq ${t.after_seq} (line ${t.line}: ${t.kind}: ${t.message}); the chain is intact up to seq ${t.after_seq}, and \`bernstein start\` cuts the tail to a .torn sidecar`;
}
