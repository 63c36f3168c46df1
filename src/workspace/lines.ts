/**
 * Reads a line-oriented file backwards, one chunk at a time, so finding the tail of a log
 * (the last audit entry, a checkpoint's WAL position near the end) costs what the tail costs,
 * not what the whole file costs.
 */
import { open } from "node:fs/promises";

export interface ReverseLine {
  /** The line's text without its newline. */
  text: string;
  /** Byte offset of the line's first byte. */
  offset: number;
  /** Byte offset just past the line's newline (or the end of the file for an unterminated line). */
  end: number;
  /** False for the last line of a file that does not end with a newline (an interrupted append). */
  terminated: boolean;
}

const CHUNK = 64 * 1024;

/**
 * Yields the lines of `file` from the last to the first. An empty final segment after the last
 * newline is not a line. Stops early when the consumer breaks out of the loop.
 */
export async function* readLinesBackward(file: string, chunkSize = CHUNK): AsyncGenerator<ReverseLine> {
  const fh = await open(file, "r");
  try {
    const size = (await fh.stat()).size;
    let pos = size;
    // Bytes of a line that spans chunks, collected from the right.
    let pending: Buffer[] = [];
    let pendingLen = 0;
    // End offset (exclusive of newline) of the line being collected, and whether it had a newline.
    let lineEnd = size;
    let terminated = true;
    let first = true;
    while (pos > 0) {
      const len = Math.min(chunkSize, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      await readFully(fh, buf, pos);
      let right = len;
      if (first) {
        first = false;
        if (buf[len - 1] === 0x0a) {
          right = len - 1;
          lineEnd = size - 1;
        } else {
          terminated = false;
        }
      }
      // Newlines found by the buffer's own search, not a loop over every byte: a log's tail is
      // read by one-shot processes that would otherwise compile that loop each time.
      for (let i = lastNewline(buf, right); i >= 0; i = lastNewline(buf, right)) {
        const piece = buf.subarray(i + 1, right);
        const text = joinLine(piece, pending, pendingLen);
        pending = [];
        pendingLen = 0;
        const offset = pos + i + 1;
        yield { text, offset, end: terminated ? lineEnd + 1 : lineEnd, terminated };
        terminated = true;
        lineEnd = pos + i;
        right = i;
      }
      if (right > 0) {
        pending.unshift(Buffer.from(buf.subarray(0, right)));
        pendingLen += right;
      }
    }
    // Whatever is left is the file's first line (possibly empty when the file starts with "\n").
    if (size > 0) {
      const text = joinLine(Buffer.alloc(0), pending, pendingLen);
      yield { text, offset: 0, end: terminated ? lineEnd + 1 : lineEnd, terminated };
    }
  } finally {
    await fh.close();
  }
}

/** The offset of the last newline in `buf` before `end`, or -1. */
function lastNewline(buf: Buffer, end: number): number {
  return end > 0 ? buf.lastIndexOf(0x0a, end - 1) : -1;
}

function joinLine(piece: Buffer, pending: Buffer[], pendingLen: number): string {
  if (pendingLen === 0) return piece.toString("utf8");
  return Buffer.concat([piece, ...pending], piece.length + pendingLen).toString("utf8");
}

async function readFully(fh: import("node:fs/promises").FileHandle, buf: Buffer, position: number) {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error(`file shrank while reading at offset ${position + done}`);
    done += bytesRead;
  }
}

export interface ForwardLine {
  text: string;
  /** Byte offset of the line's first byte. */
  offset: number;
  /** 1-based line number counted from `startOffset` (1 for the first line read). */
  lineNo: number;
  /** False for a final line without a newline (an interrupted append). */
  terminated: boolean;
}

/**
 * Streams the lines of `file` from `startOffset` (a line start) to the end, in constant memory
 * apart from the longest line. Reports whether the final line had its newline.
 */
export async function* readLinesForward(
  file: string,
  startOffset = 0,
  chunkSize = CHUNK,
): AsyncGenerator<ForwardLine> {
  const fh = await open(file, "r");
  try {
    let pos = startOffset;
    let lineNo = 0;
    let carry: Buffer[] = [];
    let carryLen = 0;
    let lineStart = startOffset;
    const buf = Buffer.alloc(chunkSize);
    while (true) {
      const { bytesRead } = await fh.read(buf, 0, chunkSize, pos);
      if (bytesRead === 0) break;
      let left = 0;
      for (let i = 0; i < bytesRead; i++) {
        if (buf[i] !== 0x0a) continue;
        const piece = buf.subarray(left, i);
        const text =
          carryLen === 0
            ? piece.toString("utf8")
            : Buffer.concat([...carry, piece], carryLen + piece.length).toString("utf8");
        carry = [];
        carryLen = 0;
        yield { text, offset: lineStart, lineNo: ++lineNo, terminated: true };
        left = i + 1;
        lineStart = pos + i + 1;
      }
      if (left < bytesRead) {
        carry.push(Buffer.from(buf.subarray(left, bytesRead)));
        carryLen += bytesRead - left;
      }
      pos += bytesRead;
    }
    if (carryLen > 0) {
      yield {
        text: Buffer.concat(carry, carryLen).toString("utf8"),
        offset: lineStart,
        lineNo: ++lineNo,
        terminated: false,
      };
    }
  } finally {
    await fh.close();
  }
}
