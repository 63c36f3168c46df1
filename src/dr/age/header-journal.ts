/**
 * The journal of an in-place header rewrite, so that a crash at any instant leaves the old
 * archive or the new one, never a torn header.
 *
 * `<archive>.rekey-journal` is one JSON document: {"version":1, "size":<archive bytes>,
 * "old_header":<base64>, "new_header":<base64>}. Both headers have the same length (the new one
 * is padded to the old one's size, `filler.ts`). The order:
 *   1. the journal is written whole (atomic replace, fsynced file and folder);
 *   2. the new header is written over the old one at offset 0 and the archive fsynced;
 *   3. the new header is read back and checked; then the journal is removed (folder fsynced).
 * A crash before 1 completes leaves no journal and the old archive. After 1, the header bytes
 * may be old, new or a mix: the journal holds everything needed, so the next rekey of that
 * archive rolls forward (writes the new header again, checks, removes the journal) before it
 * does anything else. Restore, verify and list do not write: until that next rekey, a torn
 * header fails its MAC there (exit 5).
 */
import { open, readFile } from "node:fs/promises";
import { atomicWriteFile, durableUnlink, fsyncHandle, writeAllAt } from "../../workspace/durable.js";
import { AgeFormatError } from "./header.js";

export const journalPath = (archive: string): string => `${archive}.rekey-journal`;

export interface HeaderJournal {
  size: number;
  oldHeader: Buffer;
  newHeader: Buffer;
}

export async function writeHeaderJournal(archive: string, j: HeaderJournal): Promise<void> {
  if (j.oldHeader.length !== j.newHeader.length) throw new Error("an in-place header must keep its length");
  const doc = {
    version: 1,
    size: j.size,
    old_header: j.oldHeader.toString("base64"),
    new_header: j.newHeader.toString("base64"),
  };
  await atomicWriteFile(journalPath(archive), `${JSON.stringify(doc)}\n`, { mode: 0o600 });
}

/** The pending journal of `archive`, or undefined when there is none. */
export async function readHeaderJournal(archive: string): Promise<HeaderJournal | undefined> {
  let text: string;
  try {
    text = await readFile(journalPath(archive), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const doc = JSON.parse(text) as { version: number; size: number; old_header: string; new_header: string };
    if (doc.version !== 1 || !Number.isSafeInteger(doc.size)) throw new Error("unknown version");
    const j = {
      size: doc.size,
      oldHeader: Buffer.from(doc.old_header, "base64"),
      newHeader: Buffer.from(doc.new_header, "base64"),
    };
    if (!j.newHeader.length || j.oldHeader.length !== j.newHeader.length)
      throw new Error("header lengths differ");
    return j;
  } catch (err) {
    throw new AgeFormatError(
      `the rekey journal ${journalPath(archive)} is unreadable (${(err as Error).message})`,
    );
  }
}

/** Writes `header` over the start of `archive` (same length as the one there) and fsyncs it. */
export async function overwriteHeader(archive: string, header: Buffer, expectedSize: number): Promise<void> {
  const fh = await open(archive, "r+");
  try {
    const size = (await fh.stat()).size;
    if (size !== expectedSize)
      throw new AgeFormatError(`${archive} is ${size} bytes, expected ${expectedSize}`);
    await writeAllAt(fh, header, 0);
    await fsyncHandle(fh);
  } finally {
    await fh.close();
  }
}

/** The first `length` bytes of `archive`. */
export async function readPrefix(archive: string, length: number): Promise<Buffer> {
  const fh = await open(archive, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function removeHeaderJournal(archive: string): Promise<void> {
  await durableUnlink(journalPath(archive));
}

/**
 * Finishes an interrupted in-place rewrite of `archive`, if its journal is there: the new header
 * is written (again), read back, and the journal removed. Returns whether there was one.
 */
export async function rollForwardHeader(archive: string): Promise<boolean> {
  const j = await readHeaderJournal(archive);
  if (!j) return false;
  const now = await readPrefix(archive, j.newHeader.length);
  if (!now.equals(j.newHeader)) await overwriteHeader(archive, j.newHeader, j.size);
  if (!(await readPrefix(archive, j.newHeader.length)).equals(j.newHeader))
    throw new Error(`the header of ${archive} does not read back as written`);
  await removeHeaderJournal(archive);
  return true;
}
