/**
 * The times of a WAL run's archived entries, read from its segments: what `--at-seq` needs to
 * know before it chooses a snapshot (an entry is restorable only once a snapshot had completed
 * when it was made), and the earliest entry that is, for the line that refuses one made earlier.
 * A segment is read only once its bytes match its index: a damaged one is a CORRUPT UserError.
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { sha256Hex } from "../dr/manifest.js";
import type { BackupStore } from "../storage/store.js";
import { entryTimeMs } from "../wal/entry.js";
import { readObject, readSegmentIndex, type StoredSegment } from "./catalog.js";
import { decodeSegment, undecodableReason, type SegmentCodec } from "./segment-codec.js";

export interface EntryTime {
  seq: number;
  /** The entry's own time, in whole milliseconds (entryTimeMs). */
  atMs: number;
}

/** Each entry of `segments` (one WAL run's, sorted) from seq `from` on, in seq order. */
export async function* entryTimes(
  store: BackupStore,
  segments: readonly StoredSegment[],
  codec: SegmentCodec,
  from: number,
): AsyncGenerator<EntryTime> {
  let next = from;
  for (const seg of segments) {
    if (seg.lastSeq === undefined || seg.lastSeq < next) continue;
    let plain: Buffer;
    try {
      const stored = await readObject(store, seg.key);
      const ix = await readSegmentIndex(store, seg.key);
      const sha = sha256Hex(stored);
      if (!ix?.sha256 || ix.sha256 !== sha)
        throw new UserError(
          `${store.describe(seg.key)}: altered, truncated or without its index`,
          ExitCode.CORRUPT,
        );
      plain = await decodeSegment(codec, stored, seg.to - seg.from);
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw new UserError(`${store.describe(seg.key)}: ${undecodableReason(err)}`, ExitCode.CORRUPT);
    }
    for (const line of plain.toString("utf8").split("\n")) {
      if (line === "") continue;
      let entry: { seq?: unknown; timestamp?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        throw new UserError(`${store.describe(seg.key)}: altered: a line is not JSON`, ExitCode.CORRUPT);
      }
      if (typeof entry.seq !== "number" || typeof entry.timestamp !== "number" || entry.seq < next) continue;
      next = entry.seq + 1;
      yield { seq: entry.seq, atMs: entryTimeMs(entry.timestamp) };
    }
  }
}
