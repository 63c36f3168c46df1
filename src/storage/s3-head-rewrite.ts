/**
 * A new header in front of an S3 object's payload (`dr rekey` of an `.age` archive), without
 * the old object ever being incomplete: only CompleteMultipartUpload (or the one PutObject of a
 * small object) makes new bytes visible under the key, and every failure before it aborts the
 * upload and leaves the old object as it was.
 *
 * Two ways, chosen explicitly:
 * - "server-copy": a multipart upload whose part 1 is the new header and the first payload
 *   bytes (a ranged GET, one part of memory), and whose other parts are UploadPartCopy of the
 *   old object's payload ranges, both pinned to the old object's ETag (If-Match,
 *   CopySourceIfMatch: a 412 means another writer replaced it), so the payload is
 *   not downloaded and uploaded again. Part 2 is copied first: a store that answers it
 *   NotImplemented (501) gets the upload aborted and the second way instead.
 * - "streamed": the header followed by a ranged GET of the payload, uploaded through `put`
 *   (parts of bounded memory, or one PutObject under one part's size), its sha256 and byte
 *   count checked before the upload completes.
 * Objects of one part or less always take the second way (a part copy needs a 5 MiB part 1).
 */
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from "../vendor/s3.js";
import { createHash } from "node:crypto";
import { ExitCode, UserError, withLeftover } from "../errors/errors.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import { httpStatusOf, withRetry, type RetryPolicy } from "./retry.js";
import { MAX_PARTS } from "./s3-multipart.js";
import { headThenPayload } from "./head-then-payload.js";
import type { BackupStore, HeadRewrite, HeadRewriteResult } from "./store.js";

/** What of an S3Store this needs. Failures are thrown as they come: the store wraps them. */
export interface S3Target extends Pick<BackupStore, "describe" | "get" | "put"> {
  client: S3Client;
  bucket: string;
  policy: RetryPolicy;
  partSize: number;
  fullKey(key: string): string;
  /** Aborts the upload (never removes the key when `removeKey` is false); what is left, if any. */
  cleanUpFailedPut(
    Key: string,
    uploadId: string | undefined,
    removeKey: boolean,
  ): Promise<string | undefined>;
}

/** Payload bytes per UploadPartCopy (S3 allows up to 5 GiB a part). */
export const COPY_PART_BYTES = 512 * 1024 * 1024;

/** The store has no UploadPartCopy (s3rver, some S3-compatible stores). */
function notImplemented(err: unknown): boolean {
  return httpStatusOf(err) === 501 || (err as { name?: string })?.name === "NotImplemented";
}

class CopyNotImplemented extends Error {}

/** A read or part copy pinned to the object's ETag failed (412): another writer replaced it. */
class SourceChanged extends UserError {
  constructor() {
    super(
      "the object was replaced while it was being rekeyed (its ETag changed): the rekey wrote nothing; run it again",
      ExitCode.REMOTE,
    );
  }
}

export async function rewriteHeadOnS3(
  store: S3Target,
  key: string,
  r: HeadRewrite,
): Promise<HeadRewriteResult> {
  const where = store.describe(key);
  const size = r.head.length + r.oldSize - r.payloadFrom;
  const counter = { retries: 0 };
  const current = await withRetry(`head ${where}`, store.policy, () =>
    store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: store.fullKey(key) })),
  );
  if (current.ContentLength !== r.oldSize)
    throw new UserError(`${where} is ${current.ContentLength} bytes now, was ${r.oldSize}`, ExitCode.REMOTE);
  // The new sha256 was computed from the payload read under this tag: another's bytes must not be copied under it.
  if (r.oldEtag !== undefined && current.ETag !== r.oldEtag) throw new SourceChanged();
  if (size > store.partSize) {
    try {
      await copyWithHead(store, key, r, current.ETag ?? "", counter);
      return { size, method: "server-copy", retries: counter.retries };
    } catch (err) {
      if (!(err instanceof CopyNotImplemented)) throw err;
    }
  }
  const put = await store.put(key, Readable.from(headThenPayload(store, key, r.head, r.payloadFrom)), {
    sha256: r.sha256,
    size,
    metadata: r.metadata,
    replacing: true,
    onRetry: r.onRetry,
  });
  return { size: put.size, method: "streamed", retries: counter.retries + put.retries };
}

/** The "server-copy" way; throws CopyNotImplemented (upload aborted) when the store has no part copy. */
async function copyWithHead(
  store: S3Target,
  key: string,
  r: HeadRewrite,
  ETag: string,
  counter: { retries: number },
): Promise<void> {
  const Key = store.fullKey(key);
  const where = store.describe(key);
  const Bucket = store.bucket;
  const retry = <T>(op: string, fn: () => Promise<T>) =>
    withRetry(`${op} ${where}`, store.policy, fn, { onRetry: r.onRetry, counter });
  const firstPayload = store.partSize - r.head.length;
  const Metadata = { ...r.metadata, sha256: r.sha256 };
  let UploadId: string | undefined;
  const interrupt = cleanupOnInterrupt(`the unfinished rekey upload to ${where}`, () =>
    store.cleanUpFailedPut(Key, UploadId, false),
  );
  try {
    const created = await retry("start upload", () =>
      store.client.send(
        new CreateMultipartUploadCommand({ Bucket, Key, Metadata, ChecksumAlgorithm: "SHA256" }),
      ),
    );
    UploadId = created.UploadId;
    if (!UploadId) throw new Error("the store returned no UploadId");
    const parts: CompletedPart[] = [];
    let bytes = 0;
    const CopySource = `${Bucket}/${Key.split("/").map(encodeURIComponent).join("/")}`;
    for (let from = r.payloadFrom + firstPayload, PartNumber = 2; from < r.oldSize; PartNumber++) {
      if (PartNumber > MAX_PARTS) throw new Error(`more than ${MAX_PARTS} parts`);
      const to = Math.min(r.oldSize, from + COPY_PART_BYTES);
      const copied = await retry(`copy part ${PartNumber} of`, () =>
        store.client.send(
          new UploadPartCopyCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber,
            CopySource,
            CopySourceIfMatch: ETag || undefined,
            CopySourceRange: `bytes=${from}-${to - 1}`,
          }),
        ),
      ).catch((err: unknown) => {
        if (httpStatusOf(err) === 412) throw new SourceChanged();
        throw PartNumber === 2 && notImplemented(err) ? new CopyNotImplemented() : err;
      });
      const res = copied.CopyPartResult;
      parts.push({ PartNumber, ETag: res?.ETag, ChecksumSHA256: res?.ChecksumSHA256 });
      bytes += to - from;
      from = to;
    }
    const first = await firstPart(store, key, r, firstPayload, ETag, retry);
    const ChecksumSHA256 = createHash("sha256").update(first).digest("base64");
    const up = await retry("upload part 1 of", () =>
      store.client.send(
        new UploadPartCommand({
          Bucket,
          Key,
          UploadId,
          PartNumber: 1,
          Body: first,
          ContentLength: first.length,
          ChecksumSHA256,
        }),
      ),
    );
    parts.unshift({ PartNumber: 1, ETag: up.ETag, ChecksumSHA256 });
    bytes += first.length;
    const size = r.head.length + r.oldSize - r.payloadFrom;
    if (bytes !== size) throw new Error(`the parts hold ${bytes} bytes, expected ${size}`);
    await retry("complete upload", () =>
      store.client.send(
        new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }),
      ),
    );
    await interrupt.release();
  } catch (err) {
    await interrupt.release();
    // Never a delete: whether the Complete took effect or not, the key holds a whole object.
    throw withLeftover(err, await store.cleanUpFailedPut(Key, UploadId, false));
  }
}

/**
 * Part 1: the new header and the first payload bytes, read into one part's buffer. The read is
 * pinned to the ETag the copied parts are pinned to, so all of the payload comes from one object.
 */
async function firstPart(
  store: S3Target,
  key: string,
  r: HeadRewrite,
  payloadBytes: number,
  IfMatch: string,
  retry: <T>(op: string, fn: () => Promise<T>) => Promise<T>,
): Promise<Buffer> {
  const part = Buffer.allocUnsafe(r.head.length + payloadBytes);
  r.head.copy(part);
  let at = r.head.length;
  const Range = `bytes=${r.payloadFrom}-${r.payloadFrom + payloadBytes - 1}`;
  const got = await retry("download part 1 of", () =>
    store.client.send(
      new GetObjectCommand({
        Bucket: store.bucket,
        Key: store.fullKey(key),
        Range,
        IfMatch: IfMatch || undefined,
      }),
    ),
  ).catch((err: unknown) => {
    throw httpStatusOf(err) === 412 ? new SourceChanged() : err;
  });
  for await (const chunk of got.Body as Readable) {
    const c = chunk as Buffer;
    if (at + c.length > part.length) throw new Error("the store sent more bytes than the range asked for");
    c.copy(part, at);
    at += c.length;
  }
  if (at !== part.length)
    throw new Error(`the store sent ${at - r.head.length} payload bytes of ${payloadBytes}`);
  return part;
}
