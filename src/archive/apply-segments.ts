/**
 * Rebuilds one stream from a snapshot's copy plus segments, up to a cut: every segment's size
 * and sha256 against its index, every WAL entry's hash and link to the one before from the
 * snapshot's position on, and the lines up to the cut (a WAL seq, or an instant) appended
 * durably. A missing, truncated or altered segment is a BrokenSegment naming it (exit 5).
 */
import { createHash } from "node:crypto";
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import type { BackupStore } from "../storage/store.js";
import { checkLine } from "../wal/entry.js";
import { durableTruncate, fsyncDir, fsyncHandle } from "../workspace/durable.js";
import { readObject, readSegmentIndex, type StoredSegment } from "./catalog.js";
import { walRunOf } from "./names.js";
import { emptyEnd, lineTime, type StreamEnd } from "./streams.js";

export class BrokenSegment extends UserError {
  constructor(
    readonly stream: string,
    readonly key: string,
    reason: string,
    /** The time of the newest line applied before the break (epoch ms, 0: none). */
    readonly lastGoodTime: number,
  ) {
    super(`${key}: ${reason}`, ExitCode.CORRUPT, { stream, segment: key, reason });
  }
}

/** Where to stop: after WAL entry `seq` of `run`, or after the last line at or before `atMs`. */
export interface Cut {
  atMs: number;
  run?: string;
  seq?: number;
}

export interface Applied {
  end: StreamEnd;
  /** Time of the last applied line that has one (epoch ms, 0: none). */
  lastTime: number;
  /** The target entry's own time, when this stream holds the `--at-seq` target. */
  targetTime?: number;
  segments: number;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Opens `file` for appending at exactly `length` (a longer snapshot copy is cut back there). */
async function openAt(file: string, length: number) {
  await mkdir(path.dirname(file), { recursive: true });
  const fh = await open(file, "a+");
  const size = (await fh.stat()).size;
  if (size !== length) await durableTruncate(fh, length);
  return fh;
}

/** Decides line by line what of a segment's bytes the restore keeps. */
export class LineCutter {
  lastTime = 0;
  targetTime?: number;
  done = false;
  constructor(
    private readonly stream: string,
    private readonly key: string,
    private end: StreamEnd,
    private readonly cut: Cut,
  ) {}

  get position(): StreamEnd {
    return this.end;
  }

  /** Bytes of `data` (whole lines) to append; sets `done` once the cut is reached. */
  take(data: Buffer, segmentTo: number): Buffer {
    const run = walRunOf(this.stream);
    let used = 0;
    for (let start = 0; start < data.length;) {
      const nl = data.indexOf(0x0a, start);
      if (nl < 0) throw new BrokenSegment(this.stream, this.key, "ends inside a line", this.lastTime);
      const text = data.subarray(start, nl).toString("utf8");
      let time: number;
      const next: StreamEnd = {
        length: this.end.length + (nl + 1 - start),
        tail_sha256: sha256(data.subarray(start, nl + 1)),
      };
      if (run !== undefined) {
        const c = checkLine(text);
        if (!c.ok || c.entry.seq !== (this.end.seq ?? -1) + 1 || c.entry.prev_hash !== this.end.entry_hash) {
          const why = c.ok ? `entry seq ${c.entry.seq} does not follow seq ${this.end.seq}` : c.message;
          throw new BrokenSegment(this.stream, this.key, `altered: ${why}`, this.lastTime);
        }
        time = Math.round(c.entry.timestamp * 1000);
        const target = this.cut.run === run && this.cut.seq !== undefined;
        if (target ? c.entry.seq > this.cut.seq! : time > this.cut.atMs) {
          this.done = true;
          break;
        }
        if (target && c.entry.seq === this.cut.seq) this.targetTime = time;
        Object.assign(next, { seq: c.entry.seq, entry_hash: c.entry.entry_hash });
      } else {
        time = lineTime(text);
        if (time > this.cut.atMs) {
          this.done = true;
          break;
        }
      }
      if (time > 0) this.lastTime = time;
      this.end = next;
      used = nl + 1;
      start = nl + 1;
    }
    if (!this.done && this.end.length !== segmentTo) {
      throw new BrokenSegment(this.stream, this.key, "its lines do not end at its byte range", this.lastTime);
    }
    return data.subarray(0, used);
  }
}

/** Whether a segment starts after the cut (it and what follows are not needed). */
function beyondCut(stream: string, seg: StoredSegment, firstTime: number, cut: Cut): boolean {
  const run = walRunOf(stream);
  if (run !== undefined && cut.run === run && cut.seq !== undefined) return seg.firstSeq! > cut.seq;
  return firstTime > cut.atMs;
}

async function unseal(
  open: (stored: Buffer, key: string) => Promise<Buffer>,
  stored: Buffer,
  key: string,
  broken: (reason: string) => BrokenSegment,
): Promise<Buffer> {
  try {
    return await open(stored, key);
  } catch (err) {
    throw broken(`altered: does not authenticate under its generation's key (${(err as Error).message})`);
  }
}

/** Applies `segments` (sorted by `from`) to `file`, which holds `start` (undefined: nothing). */
export async function applyStream(
  store: BackupStore,
  stream: string,
  segments: StoredSegment[],
  file: string,
  start: StreamEnd | undefined,
  cut: Cut,
  /** Unseals a stored segment (sealing.ts); throws when it does not authenticate. */
  open?: (stored: Buffer, key: string) => Promise<Buffer>,
): Promise<Applied> {
  const fh = await openAt(file, start?.length ?? 0);
  let cutter: LineCutter | undefined;
  let end = start ?? emptyEnd(stream);
  let lastTime = 0;
  let applied = 0;
  let targetTime: number | undefined;
  try {
    for (const seg of segments) {
      if (seg.to <= end.length) continue;
      const missing = (reason: string) =>
        new BrokenSegment(stream, seg.key, reason, cutter?.lastTime ?? lastTime);
      const ix = await readSegmentIndex(store, seg.key);
      if (!ix) throw missing("missing (listed, then gone)");
      if (beyondCut(stream, seg, ix.first_time, cut)) break;
      if (seg.from > end.length)
        throw missing(
          `missing segment before it: bytes ${end.length}-${seg.from} of ${stream} are not in the archive`,
        );
      const stored = await readObject(store, seg.key);
      if (sha256(stored) !== ix.sha256) {
        throw missing(
          `altered or truncated: sha256 ${sha256(stored).slice(0, 16)}..., its index says ${ix.sha256.slice(0, 16)}...`,
        );
      }
      const data = open ? await unseal(open, stored, seg.key, missing) : stored;
      if (data.length !== seg.to - seg.from)
        throw missing(`truncated: ${data.length} bytes, its name says ${seg.to - seg.from}`);
      cutter = new LineCutter(stream, seg.key, end, cut);
      cutter.lastTime = lastTime;
      const keep = cutter.take(data.subarray(end.length - seg.from), seg.to);
      if (keep.length > 0) await fh.write(keep);
      end = cutter.position;
      lastTime = cutter.lastTime;
      targetTime = cutter.targetTime ?? targetTime;
      applied++;
      if (cutter.done) break;
    }
    await fsyncHandle(fh);
  } finally {
    await fh.close();
  }
  await fsyncDir(path.dirname(file));
  return { end, lastTime, targetTime, segments: applied };
}
