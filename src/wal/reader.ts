/**
 * Streaming WAL reader and verifier: constant memory whatever the WAL's size.
 *
 * Lines are read in chunks of about 1 MiB; each chunk is decoded once (latin1 when ASCII, which
 * Python-written lines always are) and split without copying. Every line is parsed losslessly,
 * its canonical form is computed from the parsed value and hashed with node:crypto.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { constants as fsc } from "node:fs";
import { open, readdir, type FileHandle } from "node:fs/promises";
import type { Workspace } from "../workspace/layout.js";
import { parseJson, type JsonValue } from "../json/canonical.js";
import {
  GENESIS_HASH,
  entryShapeProblem,
  hashOfParsedEntry,
  toWalEntry,
  type JsonObject,
  type WalEntry,
} from "./entry.js";
import { scanTail } from "./writer.js";

export type WalErrorKind =
  "prev_hash_mismatch" | "hash_mismatch" | "seq_gap" | "invalid_json" | "invalid_utf8" | "unreadable";

export interface WalError {
  run_id: string;
  /** The seq of the entry at that place in the chain (the line's own seq when it is in sync). */
  seq: number;
  /** 1-based line number. */
  line: number;
  kind: WalErrorKind;
  message: string;
}

export interface VerifyResult {
  run_id: string;
  file: string;
  ok: boolean;
  /** Lines read (valid or not). */
  entries: number;
  bytes: number;
  /** Newest valid entry (-1 and the genesis hash when there is none). */
  last_seq: number;
  last_hash: string;
  errors: WalError[];
  /** Total errors found; `errors` keeps the first MAX_REPORTED_ERRORS. */
  error_count: number;
}

export const MAX_REPORTED_ERRORS = 1000;
const CHUNK = 1 << 20;
const LF = 0x0a;

/** Receives the lines of a file in order. */
interface LineSink {
  /** A decoded line (without its newline); `final` is true for a last line without newline. */
  line(text: string, lineNo: number, final: boolean): void;
  /** A line whose bytes are not UTF-8. */
  badUtf8(lineNo: number, final: boolean): void;
}

/**
 * Reads `fh` line by line with a bounded buffer, feeding `sink`; yields after each chunk so a
 * consumer can hand out what the chunk produced. Returns the number of bytes read.
 */
async function* scanLines(fh: FileHandle, sink: LineSink): AsyncGenerator<void, number> {
  let buf = Buffer.allocUnsafe(CHUNK);
  let filled = 0;
  let pos = 0; // bytes read so far
  let lineNo = 0;
  let eof = false;
  while (!eof) {
    if (filled === buf.length) {
      // One line longer than the buffer: grow (bounded by the longest line).
      const bigger = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(bigger, 0, 0, filled);
      buf = bigger;
    }
    const { bytesRead } = await fh.read(buf, filled, buf.length - filled, pos);
    if (bytesRead === 0) eof = true;
    filled += bytesRead;
    pos += bytesRead;
    const lastNl = filled === 0 ? -1 : buf.lastIndexOf(LF, filled - 1);
    const end = eof ? filled : lastNl + 1;
    if (end === 0) continue;
    lineNo = emitLines(buf.subarray(0, end), lineNo, eof && end > lastNl + 1, sink);
    buf.copy(buf, 0, end, filled);
    filled -= end;
    yield;
  }
  return pos;
}

/** Drives scanLines to the end; returns the bytes read. */
async function scanAll(fh: FileHandle, sink: LineSink): Promise<number> {
  const it = scanLines(fh, sink);
  while (true) {
    const step = await it.next();
    if (step.done) return step.value;
  }
}

/** Emits the lines of `region` (complete lines, plus a final one without newline when `tail`). */
function emitLines(region: Buffer, lineNo: number, tail: boolean, sink: LineSink): number {
  if (isAscii(region) || isUtf8(region)) {
    const text = isAscii(region) ? region.toString("latin1") : region.toString("utf8");
    let start = 0;
    while (start < text.length) {
      let nl = text.indexOf("\n", start);
      const final = nl === -1;
      if (final) nl = text.length;
      sink.line(text.slice(start, nl), ++lineNo, final && tail);
      start = nl + 1;
    }
    return lineNo;
  }
  // Some line is not UTF-8: decode line by line to find which.
  let start = 0;
  while (start < region.length) {
    let nl = region.indexOf(LF, start);
    const final = nl === -1;
    if (final) nl = region.length;
    const bytes = region.subarray(start, nl);
    lineNo++;
    if (isUtf8(bytes)) sink.line(bytes.toString("utf8"), lineNo, final && tail);
    else sink.badUtf8(lineNo, final && tail);
    start = nl + 1;
  }
  return lineNo;
}

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case "EISDIR":
      return "is a folder, not a WAL file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOENT":
      return "no such file";
    default:
      return e?.message ?? String(err);
  }
}

async function openForRead(file: string): Promise<FileHandle> {
  const fh = await open(file, fsc.O_RDONLY);
  try {
    if ((await fh.stat()).isDirectory()) {
      throw Object.assign(new Error("is a folder"), { code: "EISDIR" });
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}

/** Checks the whole chain of one WAL file, streaming. Never throws for bad content. */
export async function verifyWal(file: string, runId: string): Promise<VerifyResult> {
  const result: VerifyResult = {
    run_id: runId,
    file,
    ok: true,
    entries: 0,
    bytes: 0,
    last_seq: -1,
    last_hash: GENESIS_HASH,
    errors: [],
    error_count: 0,
  };
  const report = (seq: number, line: number, kind: WalErrorKind, message: string) => {
    result.ok = false;
    result.error_count++;
    if (result.errors.length < MAX_REPORTED_ERRORS)
      result.errors.push({ run_id: runId, seq, line, kind, message });
  };
  // Chain state: the seq the next line should have, the hash it should point to (undefined
  // right after a line we could not read, whose hash we do not know).
  let expectedSeq = 0;
  let expectedPrev: string | undefined = GENESIS_HASH;
  const lost = () => {
    expectedSeq++;
    expectedPrev = undefined;
  };
  const sink: LineSink = {
    line(text, lineNo, final) {
      result.entries++;
      let raw: JsonValue;
      try {
        raw = parseJson(text);
      } catch (err) {
        report(expectedSeq, lineNo, "invalid_json", tornOr(final, (err as Error).message));
        return lost();
      }
      const problem = entryShapeProblem(raw);
      if (problem) {
        report(expectedSeq, lineNo, "invalid_json", tornOr(final, problem));
        return lost();
      }
      const obj = raw as JsonObject;
      const seq = obj.seq as number;
      const computed = hashOfParsedEntry(obj);
      const hashOk = computed === obj.entry_hash;
      if (seq !== expectedSeq) {
        report(
          hashOk ? seq : expectedSeq,
          lineNo,
          "seq_gap",
          seq > expectedSeq
            ? `expected seq ${expectedSeq}, found ${seq} (entries missing)`
            : `expected seq ${expectedSeq}, found ${seq}`,
        );
      }
      const at = hashOk ? seq : expectedSeq;
      if (expectedPrev !== undefined && obj.prev_hash !== expectedPrev) {
        report(
          at,
          lineNo,
          "prev_hash_mismatch",
          `prev_hash ${String(obj.prev_hash)} does not match the previous entry_hash ${expectedPrev}`,
        );
      }
      if (!hashOk) {
        report(
          at,
          lineNo,
          "hash_mismatch",
          tornOr(
            final,
            `entry_hash ${String(obj.entry_hash)} does not match the content (computed ${computed})`,
          ),
        );
      } else {
        result.last_seq = seq;
        result.last_hash = obj.entry_hash as string;
        if (final) report(seq, lineNo, "invalid_json", "torn tail: last line has no newline");
      }
      expectedSeq = at + 1;
      expectedPrev = obj.entry_hash as string;
    },
    badUtf8(lineNo, final) {
      result.entries++;
      report(expectedSeq, lineNo, "invalid_utf8", tornOr(final, "line holds bytes that are not UTF-8"));
      lost();
    },
  };
  let fh: FileHandle;
  try {
    fh = await openForRead(file);
  } catch (err) {
    report(0, 1, "unreadable", `cannot read ${file}: ${describeFsError(err)}`);
    return result;
  }
  try {
    result.bytes = await scanAll(fh, sink);
  } catch (err) {
    report(expectedSeq, result.entries + 1, "unreadable", `read failed: ${describeFsError(err)}`);
  } finally {
    await fh.close();
  }
  return result;
}

function tornOr(final: boolean, message: string): string {
  return final ? `torn tail (no newline): ${message}` : message;
}

export class WalReadError extends Error {
  constructor(readonly error: WalError) {
    super(`wal ${error.run_id}: ${error.kind} at seq ${error.seq}, line ${error.line}: ${error.message}`);
    this.name = "WalReadError";
  }
}

export interface ReadOptions {
  /** Skip entries before this seq (cheaply: their lines are not parsed). */
  fromSeq?: number;
  /** Check each entry's hash and its link to the previous one (default true). */
  verify?: boolean;
  /** Run id for error messages (default: from the file name). */
  runId?: string;
  /**
   * A bad last line (what a crash leaves until the run's writer reopens and repairs it) ends
   * the stream quietly instead of throwing (default true).
   */
  tolerateTornTail?: boolean;
}

const SEQ_PREFIX = /^\{"seq":(\d+),/;

/**
 * Streams the entries of a WAL file in order, with constant memory. Throws WalReadError at the
 * first entry that does not parse or (with verify) does not hash or link, except a torn tail.
 */
export async function* readWalEntries(
  file: string,
  opts: ReadOptions = {},
): AsyncGenerator<{ entry: WalEntry; lineNo: number }> {
  const runId = opts.runId ?? runIdOfFile(file);
  const verify = opts.verify !== false;
  const fromSeq = opts.fromSeq ?? 0;
  const tolerate = opts.tolerateTornTail !== false;
  let batch: Array<{ entry: WalEntry; lineNo: number }> = [];
  let pendingError: WalError | undefined;
  let moreAfterError = false;
  let prevSeq = fromSeq - 1;
  let prevHash: string | undefined = fromSeq === 0 ? GENESIS_HASH : undefined;
  const fail = (seq: number, line: number, kind: WalErrorKind, message: string) => {
    pendingError = { run_id: runId, seq, line, kind, message };
  };
  const sink: LineSink = {
    line(text, lineNo) {
      if (pendingError) {
        moreAfterError = true; // a bad line followed by more lines is not a torn tail
        return;
      }
      if (fromSeq > 0) {
        const m = SEQ_PREFIX.exec(text);
        if (m && Number(m[1]) < fromSeq) return;
      }
      let raw: JsonValue;
      try {
        raw = parseJson(text);
      } catch (err) {
        return fail(prevSeq + 1, lineNo, "invalid_json", (err as Error).message);
      }
      const problem = entryShapeProblem(raw);
      if (problem) return fail(prevSeq + 1, lineNo, "invalid_json", problem);
      const obj = raw as JsonObject;
      const entry = toWalEntry(obj);
      if (entry.seq < fromSeq) return;
      if (verify) {
        if (hashOfParsedEntry(obj) !== entry.entry_hash) {
          return fail(prevSeq + 1, lineNo, "hash_mismatch", "entry_hash does not match the content");
        }
        if (prevHash !== undefined && entry.prev_hash !== prevHash) {
          return fail(entry.seq, lineNo, "prev_hash_mismatch", "prev_hash does not match the previous entry");
        }
        if (prevSeq >= 0 && entry.seq !== prevSeq + 1) {
          return fail(entry.seq, lineNo, "seq_gap", `expected seq ${prevSeq + 1}, found ${entry.seq}`);
        }
        prevHash = entry.entry_hash;
      }
      prevSeq = entry.seq;
      batch.push({ entry, lineNo });
    },
    badUtf8(lineNo) {
      if (pendingError) moreAfterError = true;
      else fail(prevSeq + 1, lineNo, "invalid_utf8", "line holds bytes that are not UTF-8");
    },
  };
  let fh: FileHandle;
  try {
    fh = await openForRead(file);
  } catch (err) {
    throw new WalReadError({
      run_id: runId,
      seq: 0,
      line: 1,
      kind: "unreadable",
      message: describeFsError(err),
    });
  }
  try {
    // One chunk at a time: hand out its entries, then read on. Memory stays at one chunk.
    for await (const _ of scanLines(fh, sink)) {
      const ready = batch;
      batch = [];
      for (const item of ready) yield item;
      if (pendingError && moreAfterError) throw new WalReadError(pendingError);
    }
    // A bad last line is a torn tail: tolerated unless asked otherwise.
    if (pendingError && !tolerate) throw new WalReadError(pendingError);
  } finally {
    await fh.close();
  }
}

/** `<run>` from `.../<run>.wal.jsonl`. */
export function runIdOfFile(file: string): string {
  const base = file.slice(file.lastIndexOf("/") + 1);
  return base.endsWith(".wal.jsonl") ? base.slice(0, -".wal.jsonl".length) : base;
}

export interface RunInfo {
  run_id: string;
  file: string;
  /** Timestamp of the first entry (null when it cannot be read). */
  first_timestamp: number | null;
}

/** The runs of a workspace in run order: by first entry timestamp, then by name. */
export async function listRuns(ws: Workspace): Promise<RunInfo[]> {
  let names: string[];
  try {
    names = await readdir(ws.walDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const runs: RunInfo[] = [];
  for (const name of names) {
    if (!name.endsWith(".wal.jsonl")) continue;
    const file = `${ws.walDir}/${name}`;
    runs.push({
      run_id: name.slice(0, -".wal.jsonl".length),
      file,
      first_timestamp: await firstTimestamp(file),
    });
  }
  runs.sort((a, b) => {
    const ta = a.first_timestamp ?? Infinity;
    const tb = b.first_timestamp ?? Infinity;
    if (ta !== tb) return ta < tb ? -1 : 1;
    return a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : 0;
  });
  return runs;
}

async function firstTimestamp(file: string): Promise<number | null> {
  let fh: FileHandle | undefined;
  try {
    fh = await openForRead(file);
    const buf = Buffer.allocUnsafe(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(LF);
    if (nl === -1) return null;
    const raw = parseJson(buf.toString("utf8", 0, nl)) as JsonObject;
    const ts = Number(raw.timestamp);
    return Number.isFinite(ts) ? ts : null;
  } catch {
    return null;
  } finally {
    await fh?.close();
  }
}

export interface TailPosition {
  /** Newest valid entry's seq (-1: none). */
  last_seq: number;
  last_hash: string;
  size: number;
  /** Offset where valid content ends; less than size when the tail is torn. */
  valid_end: number;
  torn: boolean;
}

/** The newest valid entry of a WAL file, reading only its end (no repair). */
export async function readTailPosition(file: string): Promise<TailPosition> {
  const fh = await openForRead(file);
  try {
    const tail = await scanTail(fh);
    return {
      last_seq: tail.last ? tail.last.seq : -1,
      last_hash: tail.last ? tail.last.entry_hash : GENESIS_HASH,
      size: tail.size,
      valid_end: tail.validEnd,
      torn: tail.validEnd < tail.size,
    };
  } finally {
    await fh.close();
  }
}
