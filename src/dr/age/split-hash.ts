/**
 * The bytes of an `.age` archive recorded in two ranges: its header (`age_header_bytes`,
 * `age_header_sha256`) and everything after it, the nonce and the STREAM payload
 * (`age_payload_sha256`).
 *
 * Why: a rekey rewrites only the header. The whole file's sha256 would have to be computed again
 * from every payload byte, which costs time in proportion to the archive; the payload's own
 * sha256 is unchanged by a rekey and is carried over, and only the new header is hashed. Every
 * byte is still covered by a recorded hash, as with the whole file's sha256.
 */
import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { headerLength } from "./header.js";

export interface AgeSplitHashes {
  age_header_bytes: number;
  age_header_sha256: string;
  age_payload_sha256: string;
}

/** The split hashes a record (catalogue row, `<name>.json`, audit event) carries, if all three. */
export function splitHashesOf(r: object | undefined): AgeSplitHashes | undefined {
  const x = r as Partial<Record<keyof AgeSplitHashes, unknown>> | undefined;
  // The audit chain's lossless parser gives integers as bigint.
  const bytes = typeof x?.age_header_bytes === "bigint" ? Number(x.age_header_bytes) : x?.age_header_bytes;
  if (
    typeof bytes === "number" &&
    typeof x?.age_header_sha256 === "string" &&
    typeof x.age_payload_sha256 === "string"
  )
    return {
      age_header_bytes: bytes,
      age_header_sha256: x.age_header_sha256,
      age_payload_sha256: x.age_payload_sha256,
    };
  return undefined;
}

/**
 * Hashes the bytes of an age file as they pass: the first `headerBytes` (when not given, as far
 * as the header's MAC line, found in the bytes) into one hash, the rest into another.
 */
export class AgeSplitHasher {
  private readonly header: Hash = createHash("sha256");
  private readonly payload: Hash = createHash("sha256");
  private seen = 0;
  /** Bytes held until the header's end is found (header not given). */
  private prefix: Buffer | undefined;

  constructor(private headerBytes?: number) {
    if (headerBytes === undefined) this.prefix = Buffer.alloc(0);
  }

  update(chunk: Buffer): void {
    if (this.prefix) {
      this.prefix = Buffer.concat([this.prefix, chunk]);
      const len = headerLength(this.prefix);
      if (len < 0) return;
      const all = this.prefix;
      this.prefix = undefined;
      this.headerBytes = len;
      this.update(all);
      return;
    }
    const cut = Math.max(0, Math.min(chunk.length, this.headerBytes! - this.seen));
    if (cut > 0) this.header.update(chunk.subarray(0, cut));
    if (cut < chunk.length) this.payload.update(chunk.subarray(cut));
    this.seen += chunk.length;
  }

  /** The hashes; undefined when the bytes ended before the header did. */
  digest(): AgeSplitHashes | undefined {
    if (this.prefix || this.seen < this.headerBytes!) return undefined;
    return {
      age_header_bytes: this.headerBytes!,
      age_header_sha256: this.header.digest("hex"),
      age_payload_sha256: this.payload.digest("hex"),
    };
  }
}

/** The split hashes of `header` followed by a payload whose sha256 is `payloadSha256`. */
export function withHeader(header: Buffer, payloadSha256: string): AgeSplitHashes {
  return {
    age_header_bytes: header.length,
    age_header_sha256: createHash("sha256").update(header).digest("hex"),
    age_payload_sha256: payloadSha256,
  };
}

/**
 * The split hashes of a local file, split at `headerBytes`, in one read through one reused
 * 1 MiB buffer; undefined when the file is shorter than the header.
 */
export async function splitHashesOfFile(
  file: string,
  headerBytes: number,
): Promise<AgeSplitHashes | undefined> {
  const hasher = new AgeSplitHasher(headerBytes);
  const fh = await open(file, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return hasher.digest();
      hasher.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

/**
 * What differs between recorded and actual split hashes, as a phrase ("the header's sha256 is
 * X, recorded Y"), or undefined when they agree.
 */
export function splitMismatch(
  recorded: AgeSplitHashes,
  actual: AgeSplitHashes | undefined,
  size?: { actual: number; recorded: number },
): string | undefined {
  if (!actual) return `the file ends inside its ${recorded.age_header_bytes}-byte header`;
  if (actual.age_header_sha256 !== recorded.age_header_sha256)
    return `the header's sha256 (first ${recorded.age_header_bytes} bytes) is ${actual.age_header_sha256}, recorded ${recorded.age_header_sha256}`;
  if (actual.age_payload_sha256 !== recorded.age_payload_sha256)
    return `the payload's sha256 (after byte ${recorded.age_header_bytes}) is ${actual.age_payload_sha256}, recorded ${recorded.age_payload_sha256}`;
  if (size && size.actual !== size.recorded) return `size ${size.actual}, recorded ${size.recorded}`;
  return undefined;
}
