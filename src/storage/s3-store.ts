/**
 * BackupStore on S3-compatible object storage through the AWS SDK v3.
 *
 * - Credentials come from the standard AWS chain (env, shared config/credentials files, SSO,
 *   web identity, instance metadata); region from --region, AWS_REGION, or the config file.
 * - `--endpoint URL` / BERNSTEIN_S3_ENDPOINT selects an S3-compatible store; path-style
 *   addressing is then used (bucket in the path, not the host name).
 * - Uploads stream: the source is cut into parts of `partSize` bytes and at most `concurrency`
 *   parts are in memory at once. Each part carries its SHA-256 (x-amz-checksum-sha256) for the
 *   store to validate, and the object carries the backup's SHA-256 as metadata `sha256`, read
 *   back with HeadObject after the upload; a mismatch fails the put and removes the object. A
 *   single PutObject whose answer states our SHA-256 back (the store computed it over what it
 *   stored) needs no read-back (putSmall).
 * - The SDK's own retries are off (maxAttempts 1) so that `--retries` is exact: every request
 *   is retried here with exponential backoff and full jitter (retry.ts). On final failure the
 *   multipart upload is aborted, so no partial object and no pending upload remain.
 * - The SDK's default CRC32 "aws-chunked" trailer checksums are off (WHEN_REQUIRED): we send
 *   explicit SHA-256 checksums on buffered parts instead, which every S3-compatible store
 *   understands as a plain header.
 */
import { createHash } from "node:crypto";
import { PassThrough, finished, type Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "../vendor/s3.js";
import { ExitCode, UserError, withLeftover } from "../errors/errors.js";
import {
  RetriesExhausted,
  describeError,
  httpStatusOf,
  isMissingCredentials,
  retryPolicy,
  withRetry,
  type RetryPolicy,
} from "./retry.js";
import type {
  BackupStore,
  ByteRange,
  HeadRewrite,
  HeadRewriteResult,
  ObjectInfo,
  PutOptions,
  PutResult,
  ReadOptions,
} from "./store.js";
import { rewriteHeadOnS3 } from "./s3-head-rewrite.js";
import { CONCURRENCY_ENV, ENDPOINT_ENV, intFromEnv } from "./s3-env.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import {
  PartPool,
  readParts,
  uploadParts,
  type PartsUpload,
  type Retry,
  type Tally,
  type UploadState,
} from "./s3-multipart.js";

export interface S3Options {
  /** S3-compatible endpoint URL (else BERNSTEIN_S3_ENDPOINT, else AWS). */
  endpoint?: string;
  /** The flag `endpoint` came from, named when it is refused (default `--endpoint`). */
  endpointFlag?: string;
  region?: string;
  /** Retries of transient failures per request (default 3). */
  retries?: number;
  /** Part size for multipart uploads (default 8 MiB, at least 5 MiB as S3 requires). */
  partSize?: number;
  /** Parts uploaded in parallel (default 2, env BERNSTEIN_S3_CONCURRENCY); part memory is (concurrency + 1) x partSize. */
  concurrency?: number;
  /** Path-style addressing; default on when an endpoint is given. */
  forcePathStyle?: boolean;
}

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const DEFAULT_CONCURRENCY = 2;
/**
 * The most parts in flight that BERNSTEIN_S3_CONCURRENCY may ask for. Part memory is
 * (concurrency + 1) x part size, so 64 is 520 MiB at the default 8 MiB parts: more than any link
 * needs, while a mistyped 100000 (800 GB) is refused rather than killing the process mid-upload.
 */
export const MAX_CONCURRENCY = 64;

export function makeS3Client(options: S3Options = {}): S3Client {
  // The SDK warns on Node 20 about its future support policy; that is not our user's concern.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const fromEnv = options.endpoint === undefined;
  const endpoint = options.endpoint ?? (process.env[ENDPOINT_ENV] || undefined);
  if (endpoint !== undefined && !isHttpUrl(endpoint)) {
    // Named as the user gave it: a variable they never typed on this command line is easy to forget.
    const given = fromEnv
      ? `${ENDPOINT_ENV}=${endpoint}`
      : `${options.endpointFlag ?? "--endpoint"} ${endpoint}`;
    throw new UserError(`${given}: not an http(s) URL`, ExitCode.USAGE);
  }
  const region =
    options.region ??
    (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || (endpoint ? "us-east-1" : undefined));
  return new S3Client({
    ...(region ? { region } : {}),
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 300_000 },
  });
}

function isHttpUrl(text: string): boolean {
  try {
    return /^https?:$/.test(new URL(text).protocol);
  } catch {
    return false;
  }
}

/** Where the SDK's default chain looks for credentials, as the user sets them. */
const CREDENTIAL_SOURCES =
  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials and ~/.aws/config, web identity, instance metadata";

/**
 * Turns a final S3 failure into a one-line UserError that says what was being done: exit 7, or
 * exit 2 for missing credentials (problem "credentials").
 */
export function remoteError(context: string, err: unknown): UserError {
  if (err instanceof UserError) return new UserError(`${context}: ${err.message}`, err.exitCode, err.details);
  const e = err as { name?: string; Code?: string; message?: string };
  const name = e?.name ?? "";
  if (isMissingCredentials(err))
    return new UserError(
      `${context}: no AWS credentials found (looked in ${CREDENTIAL_SOURCES})`,
      ExitCode.USAGE,
      {
        remote_error: name || undefined,
        problem: "credentials",
      },
    );
  const status = httpStatusOf(err);
  let why: string;
  if (err instanceof RetriesExhausted) why = err.message;
  else if (name === "NoSuchBucket") why = "bucket does not exist (NoSuchBucket)";
  else if (name === "NoSuchKey" || (status === 404 && name === "NotFound")) why = "no such object";
  else if (
    ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken"].includes(
      name,
    ) ||
    status === 403
  ) {
    why = `access denied (${name || "HTTP 403"}): check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)`;
  } else if (/Region is missing/i.test(e?.message ?? "")) {
    why = "no AWS region (use --region or AWS_REGION)";
  } else why = describeError(err);
  return new UserError(`${context}: ${why}`, ExitCode.REMOTE, { remote_error: name || undefined });
}

/**
 * The body of a download, watched from the moment it is returned: a failure part-way (a
 * connection cut, a timeout) becomes a one-line remote error saying what was being downloaded,
 * kept on `out` until its reader comes (a restore reads only after taking its lock and making
 * its staging folder). A wrapper that starts watching only when first read would miss a cut
 * that happens before, and the restore would end "successfully" having restored nothing.
 */
function downloading(body: Readable, where: string): Readable {
  const out = new PassThrough({ highWaterMark: 256 * 1024 });
  finished(body, (err) => {
    if (err) out.destroy(remoteError(`download ${where}`, err));
  });
  out.on("close", () => body.destroy());
  // Kept, not thrown, until the reader arrives: it finds the stream errored.
  out.on("error", () => {});
  return body.pipe(out);
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return (
    name === "NotFound" || name === "NoSuchKey" || (httpStatusOf(err) === 404 && name !== "NoSuchBucket")
  );
}

export class S3Store implements BackupStore {
  readonly root: string;
  readonly policy: RetryPolicy;
  readonly partSize: number;
  private readonly concurrency: number;

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    /** Key prefix ending in "/" or "". */
    readonly prefix: string,
    options: S3Options = {},
  ) {
    this.root = `s3://${bucket}/${prefix}`;
    this.policy = retryPolicy(options.retries);
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? DEFAULT_PART_SIZE);
    this.concurrency = Math.max(
      1,
      options.concurrency ?? intFromEnv(CONCURRENCY_ENV, 1, MAX_CONCURRENCY) ?? DEFAULT_CONCURRENCY,
    );
  }

  describe(key: string): string {
    return `${this.root}${key}`;
  }

  fullKey(key: string): string {
    return `${this.prefix}${key}`;
  }

  async put(key: string, source: Readable, options: PutOptions = {}): Promise<PutResult> {
    const Key = this.fullKey(key);
    const where = this.describe(key);
    const counter = { retries: 0 };
    const retry: Retry = (op, fn) =>
      withRetry(`${op} ${where}`, this.policy, fn, { onRetry: options.onRetry, counter });
    const Metadata = { ...options.metadata, ...(options.sha256 ? { sha256: options.sha256 } : {}) };
    const tally: Tally = { whole: createHash("sha256"), size: 0 };
    const upload: UploadState = { completeAttempted: false };
    // The store stated the SHA-256 it computed over the bytes it stored: no read-back needed.
    let confirmed = false;
    /** The sha256 the store stated back for a body not hashed here. */
    let stored: string | undefined;
    try {
      const pool = new PartPool();
      // An object of a known small size is read into a buffer of its size (one byte more, so that
      // a longer stream still shows as one), not a whole part's: an archiver putting a segment
      // every 100 ms would otherwise allocate 8 MiB each time, a full collection every few puts.
      const small = options.size !== undefined && options.size < this.partSize;
      let partSize = small ? options.size! + 1 : this.partSize;
      const parts = readParts(source, () => partSize, pool)[Symbol.asyncIterator]();
      const first = await parts.next();
      if (first.done || first.value.length < partSize) {
        const body = first.done ? Buffer.alloc(0) : first.value;
        tally.size = body.length;
        // The caller's sha256 of a body of the announced size goes out as its checksum without a
        // hash here: a store that states it back computed it over what it stored. One that does
        // not is checked here before the put counts (a mismatch removes the object, so never
        // when replacing one: that is hashed first, as is a body of any other size).
        const trusted = options.sha256 !== undefined && options.size === body.length && !options.replacing;
        if (!trusted) {
          tally.whole.update(body);
          this.checkExpected(where, tally, options);
        }
        upload.completeAttempted = true;
        const checksum = trusted ? options.sha256! : tally.whole.copy().digest("hex");
        confirmed = await this.putSmall(Key, body, checksum, Metadata, retry);
        if (trusted && confirmed) stored = checksum;
        else if (trusted) {
          tally.whole.update(body);
          this.checkExpected(where, tally, options);
        }
        options.onProgress?.(tally.size);
      } else {
        // Longer than announced: checkExpected refuses it before the upload completes.
        partSize = this.partSize;
        // Keep the part count under S3's limit for huge streams without unbounded memory.
        const grow = (partNumber: number) => {
          if (partNumber % 1000 === 0) partSize *= 2;
        };
        const partsUpload = {
          Key,
          UploadId: "",
          first: first.value,
          parts,
          pool,
          grow,
          tally,
          retry,
          options,
        };
        await this.putMultipart(where, Metadata, upload, partsUpload);
      }
      const sha256 = stored ?? tally.whole.digest("hex");
      if (!confirmed) await this.checkReadBack(key, tally.size, options.sha256 ? sha256 : undefined, retry);
      await upload.interrupt?.release();
      return { key, size: tally.size, sha256, retries: counter.retries };
    } catch (err) {
      source.destroy();
      await upload.interrupt?.release();
      const left = await this.cleanUpFailedPut(
        Key,
        upload.id,
        upload.completeAttempted && !options.replacing,
      );
      throw withLeftover(remoteError(`upload ${where}`, err), left);
    }
  }

  /** Create, parts, complete; `upload` says what a failure must clean up. */
  private async putMultipart(
    where: string,
    Metadata: Record<string, string>,
    upload: UploadState,
    u: Omit<PartsUpload, "client" | "bucket" | "concurrency">,
  ): Promise<void> {
    const { Key, retry } = u;
    const creating = retry("start upload", () =>
      this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key, Metadata, ChecksumAlgorithm: "SHA256" }),
      ),
    );
    // Ctrl-C or SIGTERM part-way: abort the upload (and remove an object a Complete may have made).
    // Registered before the upload exists: a signal while it is being created aborts it too.
    upload.interrupt = cleanupOnInterrupt(`the unfinished upload to ${where}`, async () => {
      const id = await creating.then(
        (c) => c.UploadId,
        () => undefined,
      );
      return this.cleanUpFailedPut(Key, id, upload.completeAttempted && !u.options.replacing);
    });
    upload.id = (await creating).UploadId;
    if (!upload.id) throw new Error("the store returned no UploadId");
    const UploadId = upload.id;
    const done = await uploadParts({
      ...u,
      UploadId,
      client: this.client,
      bucket: this.bucket,
      concurrency: this.concurrency,
    });
    this.checkExpected(where, u.tally, u.options);
    upload.completeAttempted = true;
    await retry("complete upload", () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: done },
        }),
      ),
    );
  }

  /**
   * A small object: one PutObject with the body's checksum (`sha256`: hex, as the tally computed
   * it). True when the answer states that checksum back (`x-amz-checksum-sha256`, as AWS S3
   * answers a put that carried one): the store computed it over the bytes it stored, under the
   * metadata of the same request, which is what a read-back would check (and more: a HEAD only
   * echoes the metadata we sent). A store that does not state it is read back.
   */
  private async putSmall(
    Key: string,
    body: Buffer,
    sha256: string,
    Metadata: Record<string, string>,
    retry: Retry,
  ): Promise<boolean> {
    const checksum = Buffer.from(sha256, "hex").toString("base64");
    const res = await retry("upload", () => {
      const put = new PutObjectCommand({
        Bucket: this.bucket,
        Key,
        Body: body,
        ContentLength: body.length,
        ChecksumSHA256: checksum,
        Metadata,
      });
      // SigV4 signs the payload's sha256 (x-amz-content-sha256); given the header, the signer
      // takes it instead of hashing the body a second time.
      put.middlewareStack.add(
        (next) => (args) => {
          const request = args.request as { headers?: Record<string, string> };
          if (request.headers) request.headers["x-amz-content-sha256"] = sha256;
          return next(args);
        },
        { step: "build", name: "bernsteinPayloadSha256" },
      );
      return this.client.send(put);
    });
    return res.ChecksumSHA256 === checksum;
  }

  /** Before the object becomes visible: the bytes read are the ones the caller expects. */
  private checkExpected(where: string, tally: Tally, expected: PutOptions): void {
    const actual = tally.whole.copy().digest("hex");
    if (expected.sha256 !== undefined && expected.sha256 !== actual) {
      throw new UserError(
        `the bytes read have sha256 ${actual}, expected ${expected.sha256}`,
        ExitCode.CORRUPT,
        { location: where },
      );
    }
    if (expected.size !== undefined && expected.size !== tally.size) {
      throw new UserError(`${tally.size} bytes read, expected ${expected.size}`, ExitCode.CORRUPT, {
        location: where,
      });
    }
  }

  /** Reads back the object's size and `sha256` metadata; a mismatch is a failed upload. */
  private async checkReadBack(
    key: string,
    size: number,
    sha256: string | undefined,
    retry: Retry,
  ): Promise<void> {
    const res = await retry("read back", () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
    );
    if (res.ContentLength !== size) {
      throw new UserError(
        `read back: the store holds ${res.ContentLength} bytes, we sent ${size}`,
        ExitCode.CORRUPT,
      );
    }
    if (sha256 !== undefined && res.Metadata?.sha256 !== sha256) {
      throw new UserError(
        `read back: the object's sha256 metadata is ${res.Metadata?.sha256 ?? "missing"}, expected ${sha256}`,
        ExitCode.CORRUPT,
      );
    }
  }

  /**
   * After a failed or interrupted put: abort the multipart upload, and remove an object a Complete
   * may have made. Returns what is left when that could not be done: one sentence naming the
   * upload id and how to remove it by hand (a pending upload is invisible in a listing and billed
   * until aborted); undefined when nothing is left.
   */
  async cleanUpFailedPut(
    Key: string,
    uploadId: string | undefined,
    completeAttempted: boolean,
  ): Promise<string | undefined> {
    const cleanupPolicy = { ...this.policy, retries: Math.max(this.policy.retries, 3) };
    const left: string[] = [];
    if (uploadId !== undefined) {
      await withRetry("abort upload", cleanupPolicy, () =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId })),
      ).catch((err: unknown) => {
        // Already gone: completed (removed below) or aborted.
        if ((err as { name?: string })?.name === "NoSuchUpload") return;
        left.push(
          `the unfinished upload ${uploadId} to s3://${this.bucket}/${Key} could not be aborted (${describeError(err)}): ` +
            `remove it with 'aws s3api abort-multipart-upload --bucket ${this.bucket} --key ${Key} --upload-id ${uploadId}' ` +
            `or a lifecycle rule with AbortIncompleteMultipartUpload`,
        );
      });
    }
    if (completeAttempted) {
      await withRetry("remove failed upload", cleanupPolicy, () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })),
      ).catch((err: unknown) =>
        left.push(
          `s3://${this.bucket}/${Key}, which the failed upload may have made, could not be removed (${describeError(err)})`,
        ),
      );
    }
    return left.length ? left.join("; ") : undefined;
  }

  async get(key: string, range?: ByteRange, options: ReadOptions = {}): Promise<Readable> {
    const where = this.describe(key);
    const Range = range && `bytes=${range.start}-${range.end === undefined ? "" : range.end - 1}`;
    try {
      const res = await withRetry(`download ${where}`, this.policy, () =>
        this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key), Range }), {
          abortSignal: options.signal,
        }),
      );
      return downloading(res.Body as Readable, where);
    } catch (err) {
      if (isNotFound(err)) throw new UserError(`${where}: no such object`, ExitCode.USAGE);
      throw remoteError(`download ${where}`, err);
    }
  }

  async rewriteHead(key: string, rewrite: HeadRewrite): Promise<HeadRewriteResult> {
    try {
      return await rewriteHeadOnS3(this, key, rewrite);
    } catch (err) {
      throw remoteError(`rekey ${this.describe(key)}`, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const where = this.describe(key);
    try {
      const res = await withRetry(`head ${where}`, this.policy, () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
      );
      return {
        key,
        size: res.ContentLength ?? 0,
        lastModified: res.LastModified ?? new Date(0),
        metadata: res.Metadata ?? {},
        etag: res.ETag,
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw remoteError(`head ${where}`, err);
    }
  }

  async list(prefix = ""): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let ContinuationToken: string | undefined;
    do {
      const res = await withRetry(`list ${this.root}`, this.policy, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            Delimiter: "/",
            ContinuationToken,
          }),
        ),
      ).catch((err: unknown) => {
        throw remoteError(`list ${this.root}`, err);
      });
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        out.push({
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          metadata: {},
        });
      }
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const where = this.describe(key);
    await withRetry(`delete ${where}`, this.policy, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
    ).catch((err: unknown) => {
      if (!isNotFound(err)) throw remoteError(`delete ${where}`, err);
    });
  }
}
