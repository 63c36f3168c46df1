/**
 * The tail of a WAL file, found by reading only its end: where valid content ends and the
 * newest valid entry. The writer cuts a torn tail there; readers report it.
 */
import type { FileHandle } from "node:fs/promises";
import { checkLine, type WalEntry } from "./entry.js";

const TAIL_WINDOW = 64 * 1024;

/** The tail of a WAL file: where valid content ends and the newest valid entry. */
export interface TailScan {
  size: number;
  validEnd: number;
  last?: WalEntry;
  /** Why bytes after validEnd are invalid (when validEnd < size). */
  reason?: string;
}

/**
 * Finds where valid content ends, reading only the end of the file: the last line that parses
 * and whose hash verifies is the newest entry; everything after it is torn.
 */
export async function scanTail(fh: FileHandle): Promise<TailScan> {
  const size = (await fh.stat()).size;
  if (size === 0) return { size, validEnd: 0 };
  let window = Math.min(TAIL_WINDOW, size);
  while (true) {
    const start = size - window;
    const buf = Buffer.allocUnsafe(window);
    let got = 0;
    while (got < window) {
      const { bytesRead } = await fh.read(buf, got, window - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const found = lastValidIn(buf.subarray(0, got), start, size);
    if (found) return found;
    if (start === 0) {
      return { size, validEnd: 0, reason: "no valid entry in the file" };
    }
    window = Math.min(window * 4, size);
  }
}

/** The last valid complete line in buf (which starts at file offset `start`), or undefined. */
function lastValidIn(buf: Buffer, start: number, size: number): TailScan | undefined {
  let reason: string | undefined;
  // `end` is the index just past a '\n' that ends a complete line.
  let end = buf.lastIndexOf(0x0a);
  if (end === -1) return undefined;
  end += 1;
  if (end < buf.length) reason = "last line has no newline (torn write)";
  while (end > 0) {
    const prevNl = end - 2 >= 0 ? buf.lastIndexOf(0x0a, end - 2) : -1;
    if (prevNl === -1 && start > 0) return undefined; // the line may begin before the window
    const lineStart = prevNl + 1;
    const line = buf.subarray(lineStart, end - 1);
    const check = checkLine(line.toString("utf8"));
    if (check.ok && !line.includes(0)) {
      return { size, validEnd: start + end, last: check.entry, reason };
    }
    reason ??= check.ok ? "line holds NUL bytes" : `last line ${check.kind}: ${check.message}`;
    end = lineStart;
  }
  return start === 0 ? { size, validEnd: 0, reason: reason ?? "no valid entry in the file" } : undefined;
}
