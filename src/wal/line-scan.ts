/**
 * Fast line splitting for WAL files: bounded buffers, one decode per window (latin1 when ASCII,
 * which Python-written lines always are), UTF-8 checked natively, no copy per line.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { constants as fsc } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";

export const CHUNK = 1 << 20;
export const LF = 0x0a;

/** Receives the lines of a file in order. */
export interface LineSink {
  /** A decoded line (without its newline); `final` is true for a last line without newline. */
  line(text: string, lineNo: number, final: boolean, ascii: boolean): void;
  /** A line whose bytes (without newline) are not UTF-8. */
  badUtf8(lineNo: number, final: boolean, bytes: Buffer): void;
  /**
   * Tried first on each complete line, on its bytes (line `lineNo` starts at `start`): returns
   * where the next line starts when it took the line, -1 to have it decoded and given to `line`.
   */
  take?(bytes: Buffer, start: number, lineNo: number): number;
}

/** A region of complete lines of a file (plus, at its end, a last line without newline when `tail`). */
export interface LineRegion {
  /** Valid until the next region is asked for. */
  bytes: Buffer;
  tail: boolean;
}

/**
 * Reads `fh` from offset `from` (a line start) with a bounded buffer (grown only for a line
 * longer than it), yielding regions of whole lines in order. Returns the number of bytes read.
 */
export async function* readRegions(fh: FileHandle, from = 0): AsyncGenerator<LineRegion, number> {
  let buf = Buffer.allocUnsafe(CHUNK);
  let filled = 0;
  let pos = from; // where the next read starts
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
    yield { bytes: buf.subarray(0, end), tail: eof && end > lastNl + 1 };
    buf.copy(buf, 0, end, filled);
    filled -= end;
  }
  return pos - from;
}

/**
 * Reads `fh` line by line with a bounded buffer, feeding `sink`; yields after each chunk so a
 * consumer can hand out what the chunk produced. Returns the number of bytes read.
 */
export async function* scanLines(fh: FileHandle, sink: LineSink): AsyncGenerator<void, number> {
  const regions = readRegions(fh);
  let lineNo = 0;
  while (true) {
    const step = await regions.next();
    if (step.done) return step.value;
    lineNo = emitLines(step.value.bytes, lineNo, step.value.tail, sink);
    yield;
  }
}

/** Drives scanLines to the end; returns the bytes read. */
export async function scanAll(fh: FileHandle, sink: LineSink): Promise<number> {
  const it = scanLines(fh, sink);
  while (true) {
    const step = await it.next();
    if (step.done) return step.value;
  }
}

/**
 * Strings decoded at once stay under this size: V8 puts bigger ones in large-object space, which
 * only a full GC frees, and a million-line verify would then grow its RSS with garbage.
 */
const DECODE_WINDOW = 64 * 1024;

/** Emits the lines of `region` (complete lines, plus a final one without newline when `tail`). */
export function emitLines(region: Buffer, lineNo: number, tail: boolean, sink: LineSink): number {
  if (sink.take) return emitEach(region, lineNo, tail, sink, sink.take);
  let start = 0;
  while (start < region.length) {
    let end = region.length;
    if (end - start > DECODE_WINDOW) {
      // Cut the window after a newline so no line is split.
      const nl = region.lastIndexOf(LF, start + DECODE_WINDOW - 1);
      end = nl >= start ? nl + 1 : region.indexOf(LF, start + DECODE_WINDOW) + 1 || region.length;
    }
    lineNo = emitWindow(region.subarray(start, end), lineNo, tail && end === region.length, sink);
    start = end;
  }
  return lineNo;
}

function emitWindow(region: Buffer, lineNo: number, tail: boolean, sink: LineSink): number {
  const ascii = isAscii(region);
  if (ascii || isUtf8(region)) {
    const text = region.toString(ascii ? "latin1" : "utf8");
    let start = 0;
    while (start < text.length) {
      let nl = text.indexOf("\n", start);
      const final = nl === -1;
      if (final) nl = text.length;
      sink.line(text.slice(start, nl), ++lineNo, final && tail, ascii);
      start = nl + 1;
    }
    return lineNo;
  }
  // Some line is not UTF-8: decode line by line to find which.
  return emitEach(region, lineNo, tail, sink, undefined);
}

/** Line by line: each complete line offered to `take`, decoded only when it does not take it. */
function emitEach(
  region: Buffer,
  lineNo: number,
  tail: boolean,
  sink: LineSink,
  take: LineSink["take"],
): number {
  let start = 0;
  while (start < region.length) start = emitLine(region, start, ++lineNo, tail, sink, take);
  return lineNo;
}

/** Emits line `lineNo`, starting at `start` in `region`; returns where the next line starts. */
export function emitLine(
  region: Buffer,
  start: number,
  lineNo: number,
  tail: boolean,
  sink: LineSink,
  take: LineSink["take"],
): number {
  const next = take ? take.call(sink, region, start, lineNo) : -1;
  if (next >= 0) return next;
  let nl = region.indexOf(LF, start);
  const final = nl === -1;
  if (final) nl = region.length;
  const bytes = region.subarray(start, nl);
  const ascii = isAscii(bytes);
  if (ascii || isUtf8(bytes))
    sink.line(bytes.toString(ascii ? "latin1" : "utf8"), lineNo, final && tail, ascii);
  else sink.badUtf8(lineNo, final && tail, bytes);
  return nl + 1;
}

export function describeFsError(err: unknown): string {
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

export async function openForRead(file: string): Promise<FileHandle> {
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
