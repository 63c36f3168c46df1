/**
 * Rotating the recipients of an age archive held in an object store (S3): the new header is
 * made exactly as for a local file (`rekey.ts`), checked, and the store writes it in front of
 * the old payload (`BackupStore.rewriteHead`: a server-side copy of the payload where the store
 * has one, else a streamed re-upload). The old object stays whole until the new one is complete.
 *
 * What is read: the header (ranged GETs); the payload once, to compute the new object's sha256
 * before the upload starts (it is the object's `sha256` metadata, set when the upload is
 * created); a streamed re-upload reads the payload a second time and must hash to the same.
 * After completing: a HEAD (size, sha256 metadata) and the header again.
 */
import { Readable } from "node:stream";
import { ExitCode, UserError } from "../../errors/errors.js";
import { hashesOf } from "../../storage/catalogue.js";
import { headThenPayload } from "../../storage/head-then-payload.js";
import type { BackupStore } from "../../storage/store.js";
import { AgeFormatError, headerLength, sealHeader, stanzaText } from "./header.js";
import { AgeIdentityError, unwrapFileKey } from "./keys.js";
import { rekeyHeader, type RekeyPlan, type RekeyResult } from "./rekey.js";

export interface ObjectRekeyResult extends RekeyResult {
  sha256: string;
  /** How the store wrote the new object (`HeadRewriteResult.method`). */
  method: "server-copy" | "streamed";
}

const STEP = 64 * 1024;

/** The header of the age object `key` (ranged reads of 64 KiB, never past MAX_HEADER_BYTES). */
export async function readObjectHeader(store: BackupStore, key: string, size: number): Promise<Buffer> {
  let bytes = Buffer.alloc(0);
  for (;;) {
    if (bytes.length >= size) throw new AgeFormatError("the age file is truncated inside its header");
    const chunks: Buffer[] = [bytes];
    const end = Math.min(size, bytes.length + STEP);
    for await (const c of await store.get(key, { start: bytes.length, end })) chunks.push(c as Buffer);
    bytes = Buffer.concat(chunks);
    const len = headerLength(bytes);
    if (len >= 0) return bytes.subarray(0, len);
  }
}

/**
 * The new header is sealed by the archive's file key (its MAC), and an identity of the plan that
 * still opens it finds that same key. One that no longer opens it was just removed: the MAC is
 * then the proof.
 */
async function checkNewHeader(header: Buffer, fileKey: Uint8Array, plan: RekeyPlan): Promise<void> {
  if (!sealHeader(fileKey, stanzaText(header)).equals(header))
    throw new Error("the new header is not sealed by the archive's file key");
  const opened = await unwrapFileKey(header, plan.identities).catch((err: unknown) => {
    if (err instanceof AgeIdentityError) return undefined;
    throw err;
  });
  if (opened && !Buffer.from(opened).equals(Buffer.from(fileKey)))
    throw new Error("the new header carries another file key");
}

export async function rekeyAgeObject(
  store: BackupStore,
  key: string,
  plan: RekeyPlan,
): Promise<ObjectRekeyResult> {
  const where = store.describe(key);
  if (!store.rewriteHead)
    throw new UserError(`${where}: this store cannot rewrite an object`, ExitCode.USAGE);
  const info = await store.head(key);
  if (!info) throw new UserError(`${where}: no such object`, ExitCode.USAGE);
  const oldHeader = await readObjectHeader(store, key, info.size);
  const { header, fileKey } = await rekeyHeader(oldHeader, plan);
  await checkNewHeader(header, fileKey, plan);
  const payloadBytes = info.size - oldHeader.length;
  const expected = header.length + payloadBytes;
  const { sha256, size, split } = await hashesOf(
    Readable.from(headThenPayload(store, key, header, oldHeader.length)),
    header.length,
  );
  if (size !== expected || !split)
    throw new UserError(`${where} changed while it was rekeyed`, ExitCode.REMOTE);
  await plan.beforeChange?.();
  const { sha256: _old, ...metadata } = info.metadata;
  const written = await store.rewriteHead(key, {
    head: header,
    payloadFrom: oldHeader.length,
    oldSize: info.size,
    oldEtag: info.etag,
    sha256,
    metadata,
  });
  await checkWritten(store, key, { header, fileKey, size: expected, sha256 });
  return {
    in_place: false,
    header_bytes_before: oldHeader.length,
    header_bytes_after: header.length,
    payload_bytes: payloadBytes,
    size_bytes: written.size,
    sha256,
    age: split,
    payload_read: true,
    method: written.method,
  };
}

/** After completing: the object's size and sha256 metadata, and its header read back. */
async function checkWritten(
  store: BackupStore,
  key: string,
  w: { header: Buffer; fileKey: Uint8Array; size: number; sha256: string },
): Promise<void> {
  const info = await store.head(key);
  const back = info && (await readObjectHeader(store, key, info.size));
  if (
    !info ||
    !back ||
    info.size !== w.size ||
    info.metadata.sha256 !== w.sha256 ||
    !back.equals(w.header) ||
    !sealHeader(w.fileKey, stanzaText(back)).equals(back)
  ) {
    throw new UserError(
      `${store.describe(key)}: the rekeyed object does not read back as written (size ${info?.size}, expected ${w.size})`,
      ExitCode.CORRUPT,
    );
  }
}
