/**
 * Rotating the recipients of an age archive without touching its payload: the file key is
 * unwrapped with an identity that opens the archive, wrapped again for the new recipients,
 * and the new header is followed by the old payload bytes (nonce and STREAM) as they are.
 *
 * Locally the new file is written beside the old one, fsynced, checked (its header parses and
 * its MAC is the file key's; its size is the old size with the new header), then renamed over
 * it: a crash leaves the old archive or the new one, never a mix.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { fsyncDir, fsyncHandle, tempPathFor } from "../../workspace/durable.js";
import { cleanupOnInterrupt } from "../../workspace/interrupt.js";
import { AgeFormatError, headerLength, sealHeader, stanzaText } from "./header.js";
import { unwrapFileKey, wrapFileKey } from "./keys.js";

export interface RekeyPlan {
  /** Identities of which at least one opens the archive. */
  identities: readonly string[];
  /** Recipients to wrap the file key to. */
  recipients: readonly string[];
  /** Keep the old stanzas (adding recipients) instead of replacing them (a new full set). */
  keepExisting: boolean;
}

export interface RekeyResult {
  header_bytes_before: number;
  header_bytes_after: number;
  payload_bytes: number;
  /** sha256 of the rewritten archive. */
  sha256: string;
  size_bytes: number;
}

/** The header of a local age file (read in 64 KiB steps, never past MAX_HEADER_BYTES). */
export async function readAgeHeader(file: string): Promise<{ header: Buffer; size: number }> {
  const fh = await open(file, "r");
  try {
    const size = (await fh.stat()).size;
    let bytes = Buffer.alloc(0);
    for (;;) {
      const buf = Buffer.alloc(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes.length);
      if (bytesRead === 0) throw new AgeFormatError("the age file is truncated inside its header");
      bytes = Buffer.concat([bytes, buf.subarray(0, bytesRead)]);
      const len = headerLength(bytes);
      if (len >= 0) return { header: bytes.subarray(0, len), size };
    }
  } finally {
    await fh.close();
  }
}

/** The new header for `header` under `plan`, and the file key that both share. */
export async function rekeyHeader(
  header: Buffer,
  plan: RekeyPlan,
): Promise<{ header: Buffer; fileKey: Uint8Array }> {
  const fileKey = await unwrapFileKey(header, plan.identities);
  const kept = plan.keepExisting ? stanzaText(header) : "";
  const added = plan.recipients.length ? await wrapFileKey(fileKey, plan.recipients) : "";
  if (!kept && !added) throw new Error("a rekey must leave at least one recipient");
  return { header: sealHeader(fileKey, kept + added), fileKey };
}

/** Rewrites the header of the local age archive `file` in place (atomic replace). */
export async function rekeyAgeFile(file: string, plan: RekeyPlan): Promise<RekeyResult> {
  const { header: oldHeader, size } = await readAgeHeader(file);
  const { header, fileKey } = await rekeyHeader(oldHeader, plan);
  const payloadBytes = size - oldHeader.length;
  const tmp = tempPathFor(file);
  const cleanup = cleanupOnInterrupt(tmp, () => unlink(tmp).catch(() => {}));
  try {
    const mode = (await stat(file)).mode & 0o777;
    const hash = createHash("sha256").update(header);
    const out = await open(tmp, "wx", mode);
    try {
      await out.write(header);
      let at = header.length;
      for await (const chunk of createReadStream(file, { start: oldHeader.length, highWaterMark: 1 << 20 })) {
        hash.update(chunk as Buffer);
        await out.write(chunk as Buffer, 0, (chunk as Buffer).length, at);
        at += (chunk as Buffer).length;
      }
      if (at !== header.length + payloadBytes) throw new Error(`${file} changed while it was rekeyed`);
      await fsyncHandle(out);
    } finally {
      await out.close();
    }
    await checkRewritten(tmp, fileKey, header.length + payloadBytes);
    await rename(tmp, file);
    await fsyncDir(path.dirname(file));
    return {
      header_bytes_before: oldHeader.length,
      header_bytes_after: header.length,
      payload_bytes: payloadBytes,
      sha256: hash.digest("hex"),
      size_bytes: header.length + payloadBytes,
    };
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  } finally {
    await cleanup.release();
  }
}

/** The rewritten file, read back: a header sealed by the same file key, and every payload byte. */
async function checkRewritten(file: string, fileKey: Uint8Array, expectedSize: number): Promise<void> {
  const { header, size } = await readAgeHeader(file);
  if (!sealHeader(fileKey, stanzaText(header)).equals(header) || size !== expectedSize) {
    throw new Error(`the rewritten archive ${file} does not read back as written`);
  }
}
