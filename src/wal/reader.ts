/**
 * Streaming WAL reader and verifier: constant memory whatever the WAL's size.
 *
 * Lines are read in chunks of about 1 MiB and split without copying. A line provably in the
 * canonical form is hash-checked on its own bytes (readCanonicalLine); any other line is parsed
 * losslessly, its canonical form computed from the parsed value and hashed with node:crypto.
 */
import { availableParallelism } from "node:os";
import type { FileHandle } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import type { Workspace } from "../workspace/layout.js";
import { parseJson } from "../json/canonical.js";
import { GENESIS_HASH, type JsonObject } from "./entry.js";
import { EntrySink, WalReadError, type ReadEntry } from "./entry-sink.js";
import { listWalRunFiles, runIdCreatedAt, runIdOfWalFile } from "./run-files.js";
import { scanTail } from "./tail.js";
import { ChainVerifier, type CleanBatch, type VerifyResult } from "./chain.js";
import { CHUNK, LF, describeFsError, emitLines, openForRead, scanAll } from "./line-scan.js";
import { pullLines } from "./pull-lines.js";

export type { ReadEntry } from "./entry-sink.js";
export { MAX_REPORTED_ERRORS, type VerifyResult, type WalError, type WalErrorKind } from "./chain.js";

export interface VerifyOptions {
  /**
   * Worker threads to hash with (default 0: the calling thread alone). Workers buy wall time on
   * idle cores at the price of more CPU per entry (each isolate parses and hashes its batches
   * and the calling thread still reads and links them), so they are something to ask for.
   */
  workers?: number;
}

/**
 * Checks the whole chain of one WAL file, streaming with bounded memory. Never throws for bad
 * content: a folder, an unreadable file or bytes that are not UTF-8 are reported at their line.
 * With `workers`, batches are hashed by worker threads; the result is the same as without.
 */
export async function verifyWal(
  file: string,
  runId: string,
  opts: VerifyOptions = {},
): Promise<VerifyResult> {
  let v = new ChainVerifier(runId, file);
  let fh: FileHandle;
  try {
    fh = await openForRead(file);
  } catch (err) {
    v.report(0, 1, "unreadable", `cannot read ${file}: ${describeFsError(err)}`);
    return v.result;
  }
  try {
    const workers = Math.min(opts.workers ?? 0, availableParallelism());
    if (workers > 0) {
      try {
        v.result.bytes = await verifyParallel(fh, v, workers);
        v.result.workers = workers;
        return v.result;
      } catch {
        // A worker could not run (resource limits, a crash): do it all again on this thread.
        v = new ChainVerifier(runId, file);
      }
    }
    v.result.bytes = await scanAll(fh, v);
  } catch (err) {
    v.unreadable(`read failed: ${describeFsError(err)}`);
  } finally {
    await fh.close();
  }
  return v.result;
}

interface BatchReply {
  id: number;
  summary: CleanBatch | undefined;
  bytes: Uint8Array;
}

/**
 * Reads chunks of complete lines and sends each to a worker; replies are taken in order: a
 * clean batch that continues the chain advances it at once, anything else goes through the
 * exact state machine here. Returns the bytes read.
 */
async function verifyParallel(fh: FileHandle, v: ChainVerifier, n: number): Promise<number> {
  const pool = Array.from(
    { length: n },
    () =>
      new Worker(new URL("./verify-worker.js", import.meta.url), {
        resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 16 },
      }),
  );
  const replies = new Map<number, BatchReply>();
  const spare: ArrayBuffer[] = [];
  let nextToTake = 0;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  for (const w of pool) {
    w.on("message", (r: BatchReply) => {
      replies.set(r.id, r);
      notify();
    });
    w.on("error", (err) => {
      failure = err;
      notify();
    });
    w.on("exit", (code) => {
      if (code !== 0) failure ??= new Error(`verify worker exited with ${code}`);
      notify();
    });
  }
  const takeReady = () => {
    while (replies.has(nextToTake)) {
      const r = replies.get(nextToTake)!;
      replies.delete(nextToTake);
      nextToTake++;
      if (!(r.summary && v.tryAdvance(r.summary))) {
        v.feed(Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength));
      }
      // Reuse chunk buffers: memory stays at the chunks in flight.
      if (r.bytes.buffer.byteLength === CHUNK) spare.push(r.bytes.buffer as ArrayBuffer);
    }
  };
  const waitForReply = async () => {
    const before = nextToTake;
    takeReady();
    if (nextToTake > before) return;
    if (failure) throw failure;
    await new Promise<void>((resolve) => (wake = resolve));
    if (failure) throw failure;
    takeReady();
  };
  try {
    let carry = Buffer.alloc(0);
    let pos = 0;
    let sent = 0;
    let size = CHUNK;
    while (true) {
      const want = Math.max(size, carry.length * 2);
      const reused = want === CHUNK ? spare.pop() : undefined;
      const buf = reused ? Buffer.from(reused) : Buffer.allocUnsafeSlow(want);
      carry.copy(buf, 0);
      let filled = carry.length;
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, pos);
      pos += bytesRead;
      filled += bytesRead;
      const eof = bytesRead === 0;
      const end = filled === 0 ? 0 : buf.lastIndexOf(LF, filled - 1) + 1;
      if (end === 0 && !eof) {
        carry = buf.subarray(0, filled); // a line longer than the chunk: read on
        size = buf.length * 2;
        continue;
      }
      carry = Buffer.from(buf.subarray(end, filled));
      size = CHUNK;
      if (end > 0) {
        while (sent - nextToTake >= 2 * n) await waitForReply();
        const bytes = new Uint8Array(buf.buffer, buf.byteOffset, end);
        pool[sent % n].postMessage({ id: sent, bytes }, [buf.buffer as ArrayBuffer]);
        sent++;
      }
      if (eof) break;
    }
    while (nextToTake < sent) await waitForReply();
    // What follows the last newline is a torn tail: the exact check names it.
    if (carry.length > 0) emitLines(carry, v.linesSeen, true, v);
    return pos;
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
}

export { WalReadError };

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
  /**
   * Hand out only the entries of these decision types. With `verify: false` the lines that
   * provably hold another type are skipped without being parsed (nor checked in any way).
   */
  decisionTypes?: readonly string[];
}

/**
 * Streams the entries of a WAL file in order, with constant memory. Throws WalReadError at the
 * first entry that does not parse or (with verify) does not hash or link, except a torn tail.
 * Canonical lines are hash-checked on their bytes and their entries built from their tokens
 * (see EntrySink).
 */
export function readWalEntries(file: string, opts: ReadOptions = {}): AsyncIterableIterator<ReadEntry> {
  const runId = opts.runId ?? runIdOfFile(file);
  const sink = new EntrySink(
    runId,
    opts.fromSeq ?? 0,
    opts.verify !== false,
    opts.tolerateTornTail !== false,
    opts.decisionTypes && new Set(opts.decisionTypes),
  );
  const openFile = async () => {
    try {
      return await openForRead(file);
    } catch (err) {
      throw new WalReadError({
        run_id: runId,
        seq: 0,
        line: 1,
        kind: "unreadable",
        message: describeFsError(err),
      });
    }
  };
  // Each entry is built as it is handed out: memory stays at one chunk and one entry.
  return pullLines(openFile, sink);
}

/** `<run>` from `.../<run>.wal.jsonl` (the file's own name for any other file). */
export function runIdOfFile(file: string): string {
  return runIdOfWalFile(file) ?? file.slice(file.lastIndexOf("/") + 1);
}

export interface RunInfo {
  run_id: string;
  file: string;
  /** Timestamp of the first entry (null when it cannot be read). */
  first_timestamp: number | null;
  /** entry_hash of the first line when it is a seq-0 entry (null otherwise). */
  first_hash: string | null;
}

/**
 * The runs of a workspace in run order: by first entry timestamp (for a run without one, the
 * creation time in its id), then by name.
 */
export async function listRuns(ws: Workspace): Promise<RunInfo[]> {
  const runs: RunInfo[] = [];
  for (const { run_id, file } of await listWalRunFiles(ws.walDir)) {
    const first = await firstEntry(file);
    runs.push({ run_id, file, first_timestamp: first.timestamp, first_hash: first.hash });
  }
  // A run without a readable first entry (a start refused right after opening its WAL, a crash
  // in its first append) sorts by the time its id was made; a foreign id without entries, first.
  const timeOf = (r: RunInfo) => r.first_timestamp ?? runIdCreatedAt(r.run_id) ?? -Infinity;
  runs.sort((a, b) => {
    const ta = timeOf(a);
    const tb = timeOf(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    return a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : 0;
  });
  return runs;
}

const HASH_HEX = /^[0-9a-f]{64}$/;

async function firstEntry(file: string): Promise<{ timestamp: number | null; hash: string | null }> {
  let fh: FileHandle | undefined;
  try {
    fh = await openForRead(file);
    const buf = Buffer.allocUnsafe(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(LF);
    if (nl === -1) return { timestamp: null, hash: null };
    const raw = parseJson(buf.toString("utf8", 0, nl)) as JsonObject;
    const ts = Number(raw.timestamp);
    const hash = raw.seq === 0 && typeof raw.entry_hash === "string" && HASH_HEX.test(raw.entry_hash);
    return { timestamp: Number.isFinite(ts) ? ts : null, hash: hash ? (raw.entry_hash as string) : null };
  } catch {
    return { timestamp: null, hash: null };
  } finally {
    await fh?.close();
  }
}

/** A run whose entries begin as another run's do: a copy of it (or of a part of it). */
export interface RepeatedRun {
  run_id: string;
  /** The run it repeats: the one before it in run order. */
  same_as: string;
  /** Their common first entry's hash. */
  entry_hash: string;
}

/** What is wrong with a repeated run, without its own id (callers name it). */
export function describeRepeatedRun(r: RepeatedRun): string {
  return (
    `repeats the entries of run ${r.same_as}: both begin with entry 0 ${r.entry_hash.slice(0, 12)}…, ` +
    `which no two runs share; one is a copy of the other, and the state counts every entry it repeats twice`
  );
}

/**
 * Runs that repeat another run's entries (`runs` in run order, as listRuns gives them). Every run
 * is its own chain from the genesis hash, so a copy of a run (whole or a prefix of it) is a valid
 * chain, and verifying each run alone cannot see it; but no two runs made by a writer share an
 * entry (each begins with an entry stamped with the time its run started). Comparing first
 * entries is enough: an entry names its predecessor's hash, so two valid chains holding the same
 * entry hold the same entries before it, down to their first. No entry beyond the first is read.
 */
export function repeatedRuns(runs: readonly RunInfo[]): RepeatedRun[] {
  const firstOf = new Map<string, string>();
  const out: RepeatedRun[] = [];
  for (const r of runs) {
    if (r.first_hash === null) continue;
    const same = firstOf.get(r.first_hash);
    if (same === undefined) firstOf.set(r.first_hash, r.run_id);
    else out.push({ run_id: r.run_id, same_as: same, entry_hash: r.first_hash });
  }
  return out;
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
