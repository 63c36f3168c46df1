/**
 * What a segment's stored bytes are (docs/formats.md "Segment encoding"): its plaintext,
 * compressed as the generation's record says (`compression`: "br" or "gzip"; absent: as it is),
 * then sealed under the generation key in an encrypted one (sealing.ts). The shipper and
 * compaction store with `encodeSegment`; restore, check and compaction read with `decodeSegment`
 * (restore streams a segment that is only compressed through `segmentInflater`).
 */
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import {
  brotliCompress,
  brotliDecompress,
  constants as zlibConstants,
  createBrotliDecompress,
  createGunzip,
  gunzip,
  gzip,
  type BrotliDecompress,
  type Gunzip,
} from "node:zlib";
import type { GenerationRecord } from "./catalog.js";
import { openSegment, sealSegment, type SealedAs, type SegmentKey } from "./sealing.js";
import { ExitCode, UserError } from "../errors/errors.js";

/** The compressions a generation's segments may have: Brotli, or gzip in older generations. */
export const SEGMENT_COMPRESSIONS = ["br", "gzip"] as const;
export type SegmentCompression = (typeof SEGMENT_COMPRESSIONS)[number];

const isSegmentCompression = (c: string): c is SegmentCompression =>
  (SEGMENT_COMPRESSIONS as readonly string[]).includes(c);

/**
 * The compression a new generation's segments get. Brotli at quality 1 with a 64 KiB window
 * compresses WAL, audit and run lines about twice as fast as deflate at level 1 (the archiver's
 * largest cost beside the writer) and a little smaller; it inflates about a third slower, which
 * only restores and checks pay.
 */
export const SEGMENT_COMPRESSION: SegmentCompression = "br";

const BROTLI_QUALITY = 1;
const BROTLI_WINDOW_BITS = 16;

/**
 * Gzip, as generations before Brotli were written (and are still resumed): level 1 with an 8 KiB
 * window, the form their records promise readers (docs/formats.md).
 */
const GZIP_LEVEL = 1;
const GZIP_WINDOW_BITS = 13;
/**
 * zlib hands its output back in steps of the chunk size, each a round trip from the thread pool
 * to this thread: a step of about a quarter of the input takes a segment out in one or two.
 */
const outputChunkSize = (inputBytes: number): number =>
  Math.max(16 * 1024, Math.min(256 * 1024, inputBytes >> 2));

export interface SegmentCodec {
  /** How the plaintext is compressed before any seal (undefined: it is not). */
  compression?: SegmentCompression;
  /** Encrypted generations: the key the segments are sealed with (undefined: not held). */
  key?: SegmentKey;
  /** The generation is encrypted (its key may not be held by this reader). */
  encrypted: boolean;
}

/** How `record`'s segments are stored; `key`: the generation's, when the caller holds it. */
export function codecOf(record: GenerationRecord, key?: SegmentKey): SegmentCodec {
  const compression = record.compression;
  if (compression !== undefined && !isSegmentCompression(compression))
    throw new UserError(
      `generation ${record.generation}: its segments are compressed as ${JSON.stringify(compression)}, ` +
        `which this version does not read (it reads ${SEGMENT_COMPRESSIONS.join(", ")})`,
      ExitCode.CORRUPT,
    );
  return {
    ...(compression ? { compression } : {}),
    encrypted: record.encrypted === true,
    ...(key ? { key } : {}),
  };
}

/** Whether stored bytes differ from the plaintext (then its hash is not the stored one's). */
export const encodes = (c: SegmentCodec): boolean => c.compression !== undefined || c.encrypted;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const brotliAsync = promisify(brotliCompress);
const unbrotliAsync = promisify(brotliDecompress);

function compress(compression: SegmentCompression, input: Buffer): Promise<Buffer> {
  const chunkSize = outputChunkSize(input.length);
  if (compression === "gzip")
    return gzipAsync(input, { level: GZIP_LEVEL, windowBits: GZIP_WINDOW_BITS, chunkSize });
  return brotliAsync(input, {
    chunkSize,
    params: {
      [zlibConstants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
      [zlibConstants.BROTLI_PARAM_LGWIN]: BROTLI_WINDOW_BITS,
      [zlibConstants.BROTLI_PARAM_SIZE_HINT]: input.length,
    },
  });
}

/**
 * A segment's stored bytes. The same plaintext under the same name always gives the same bytes
 * (Brotli and deflate with fixed settings are deterministic, and the seal is fixed by key, name
 * and plaintext), so a segment sent again after a kill or a lost answer is the segment it was.
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
  if (c.compression) parts = [await compress(c.compression, whole(plain))];
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
  if (!c.compression) return opened;
  const maxOutputLength = Math.max(1, length + 1);
  try {
    return await (c.compression === "gzip"
      ? gunzipAsync(opened, { maxOutputLength })
      : unbrotliAsync(opened, { maxOutputLength }));
  } catch (err) {
    throw new SegmentInflateError((err as Error).message);
  }
}

/** A segment's (opened) bytes do not inflate to at most its length: damaged, or written wrong. */
export class SegmentInflateError extends Error {}

/** Why a segment could not be decoded, for the reports that name it. */
export function undecodableReason(err: unknown): string {
  return err instanceof SegmentInflateError
    ? `altered or truncated: does not inflate (${err.message})`
    : `altered: does not authenticate under its generation's key (${(err as Error).message})`;
}

/**
 * An inflater for a compressed segment streamed from the store (its reader bounds what it takes).
 * Each step of it is a round trip to the thread pool, and its output a buffer that becomes
 * garbage: larger steps cost fewer round trips but leave more garbage between collections, and a
 * higher peak. A gunzip takes 64 KiB steps rather than zlib's 16 KiB; Brotli, which leaves more
 * garbage per step, 32 KiB, so that a long restore peaks no higher than a short one.
 */
export function segmentInflater(compression: SegmentCompression): Gunzip | BrotliDecompress {
  return compression === "gzip"
    ? createGunzip({ chunkSize: 64 * 1024 })
    : createBrotliDecompress({ chunkSize: 32 * 1024 });
}

/**
 * Whether an inflater's error is about the bytes it was given (zlib's Z_DATA_ERROR, Z_BUF_ERROR
 * for a cut stream, Brotli's ERR__ERROR_FORMAT_...) rather than the stream that fed it.
 */
export function isInflateError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === "string" && (code.startsWith("Z_") || code.startsWith("ERR__ERROR"));
}
