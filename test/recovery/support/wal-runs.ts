/** Writes decision sequences as real WAL runs (group commit through WalWriter). */
import type { WalEntry } from "../../../src/wal/entry.js";
import { WalWriter } from "../../../src/wal/writer.js";
import type { Workspace } from "../../../src/workspace/layout.js";
import type { DecisionRecord } from "./decisions.js";

/** Appends `records` to run `runId` (opened, appended in one burst, drained); returns the entries. */
export async function appendRecords(
  ws: Workspace,
  runId: string,
  records: DecisionRecord[],
  opts: { clock?: () => number; markClosed?: boolean } = {},
): Promise<WalEntry[]> {
  const w = await WalWriter.open(ws, runId, opts.clock ? { clock: opts.clock } : {});
  try {
    return await Promise.all(records.map((r) => w.append(r)));
  } finally {
    await w.close({ markClosed: opts.markClosed ?? false });
  }
}

/** A clock giving strictly increasing epoch seconds from `start`. */
export function steppingClock(start: number, step = 0.001): () => number {
  let t = start;
  return () => (t += step);
}
