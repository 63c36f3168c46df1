/**
 * What a segment's stored bytes are (docs/formats.md "Segment encoding"): its plaintext, gzipped
 * in a generation whose record says `compression: "gzip"`, then sealed under the generation key
 * in an encrypted one (sealing.ts). The shipper and compaction store with `encodeSegment`;
 * restore, check and compaction read with `decodeSegment` (restore streams a segment that is
 * only gzipped through `segmentInflater`).
 */
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { createGunzip, gunzip, gzip, type Gunzip } from "node:zlib";
import type { GenerationRecord } from "./catalog.js";
import { openSegment, sealSegment, type SealedAs, type SegmentKey } from "./sealing.js";

/** The compression a new generation's segments get (absent from older records: none). */
export const SEGMENT_COMPRESSION = "gzip";

/**
 * Level 1: a WAL's lines shrink about 6.5 times at it (each line's prev_hash repeats the line
 * before's entry_hash, the field names repeat), and higher levels gain little for several times
 * the CPU, spent beside the writer. An 8 KiB window holds the last twenty lines or so, all that
 * level 1's short match search looks back on, and keeps zlib's window and hash chains in the
 * CPU's caches: less CPU than the default 32 KiB on WAL, audit and run logs, at about the same
 * ratio. Any inflater reads it (the window size is in the stream's header).
 */
const GZIP_LEVEL = 1;
const GZIP_WINDOW_BITS = 13;
/**
 * zlib hands its output back in steps of the chunk size, each a round trip from the thread pool
 * to this thread: a step of about a quarter of the input takes a segment out in one or two.
 */
const gzipChunkSize = (inputBytes: number): number =>
  Math.max(16 * 1024, Math.min(256 * 1024, inputBytes >> 2));

export interface SegmentCodec {
  compressed: boolean;
  /** Encrypted generations: the key the segments are sealed with (undefined: not held). */
  key?: SegmentKey;
  /** The generation is encrypted (its key may not be held by this reader). */
  encrypted: boolean;
}

/** How `record`'s segments are stored; `key`: the generation's, when the caller holds it. */
export function codecOf(record: GenerationRecord | undefined, key?: SegmentKey): SegmentCodec {
  return {
    compressed: record?.compression === SEGMENT_COMPRESSION,
    encrypted: record?.encrypted === true,
    ...(key ? { key } : {}),
  };
}

/** Whether stored bytes differ from the plaintext (then its hash is not the stored one's). */
export const encodes = (c: SegmentCodec): boolean => c.compressed || c.encrypted;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * A segment's stored bytes. The same plaintext under the same name always gives the same bytes
 * (zlib's deflate with fixed settings is deterministic, and the seal is fixed by key, name and
 * plaintext), so a segment sent again after a kill or a lost answer is the segment it was.
 */
export async function encodeSegment(
  c: SegmentCodec,
  plain: readonly Buffer[],
  as: Omit<SealedAs, "plainSha256"> & { plainSha256?: string },
): Promise<Buffer> {
  if (c.encrypted && !c.key) throw new Error(`${as.name}: the generation's key is not held`);
  // Buffer.concat copies even a single buffer: a shipped segment is one.
  const whole = (parts: readonly Buffer[]): Buffer => (parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  let parts = plain;
  if (c.compressed) {
    const input = whole(plain);
    const options = {
      level: GZIP_LEVEL,
      windowBits: GZIP_WINDOW_BITS,
      chunkSize: gzipChunkSize(input.length),
    };
    parts = [await gzipAsync(input, options)];
  }
  if (!c.key) return whole(parts);
  const plainSha256 =
    as.plainSha256 ?? plain.reduce((h, p) => h.update(p), createHash("sha256")).digest("hex");
  return sealSegment(c.key, parts, { ...as, plainSha256 });
}

/**
 * A segment's plaintext from its stored bytes, at most `length` bytes (its name's byte range):
 * a segment that would inflate to more is refused before it is inflated further. Throws when it
 * does not authenticate under the key or does not inflate.
 */
export async function decodeSegment(c: SegmentCodec, stored: Buffer, length: number): Promise<Buffer> {
  if (c.encrypted && !c.key) throw new Error("the generation's key is not held");
  const opened = c.key ? await openSegment(c.key, stored) : stored;
  if (!c.compressed) return opened;
  try {
    return await gunzipAsync(opened, { maxOutputLength: Math.max(1, length + 1) });
  } catch (err) {
    throw new SegmentInflateError((err as Error).message);
  }
}

/** A segment's (opened) bytes are not a gzip of at most its length: damaged, or written wrong. */
export class SegmentInflateError extends Error {}

/** Why a segment could not be decoded, for the reports that name it. */
export function undecodableReason(err: unknown): string {
  return err instanceof SegmentInflateError
    ? `altered or truncated: does not inflate (${err.message})`
    : `altered: does not authenticate under its generation's key (${(err as Error).message})`;
}

/**
 * A gunzip for a gzipped segment streamed from the store (its reader bounds what it takes). Each
 * step of a gunzip stream is a round trip to the thread pool: 64 KiB of output per step rather
 * than zlib's 16 KiB (larger steps leave more garbage between collections, and a higher peak).
 */
export function segmentInflater(): Gunzip {
  return createGunzip({ chunkSize: 64 * 1024 });
}
