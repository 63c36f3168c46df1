/**
 * The one storage interface every off-site algorithm (catalogue, retention, verification) is
 * written against. Two implementations: a local folder (`local-store.ts`) and S3-compatible
 * object storage (`s3-store.ts`). Keys are flat names relative to the store's root
 * (a folder, or a bucket plus prefix).
 */
import type { Readable } from "node:stream";

export interface ObjectInfo {
  /** Key relative to the store root. */
  key: string;
  size: number;
  lastModified: Date;
  /** User metadata (lower-case keys). Filled by head(); list() may leave it empty. */
  metadata: Record<string, string>;
  /** The store's tag for these exact bytes, when it has one (an S3 ETag): a replaced object has another. */
  etag?: string;
}

export interface PutOptions {
  /**
   * Lower-case hex SHA-256 the caller expects the bytes to have. The store checks the streamed
   * bytes against it (and stores it as metadata `sha256`); a mismatch fails the put and leaves
   * no object behind.
   */
  sha256?: string;
  /**
   * `sha256` was computed by the caller over the very buffers `source` yields, which it holds in
   * memory (an archive segment): a store that would hash them only to check the caller takes it
   * as it is (the size is still checked). A source read from a file, which can change between
   * the caller's read and the store's, is never marked so.
   */
  sha256OfSource?: boolean;
  /** User metadata stored with the object (keys lower-case, values ASCII). */
  metadata?: Record<string, string>;
  /** Called before each retry of a transient failure (for logging). */
  onRetry?: (info: RetryInfo) => void;
  /** Called as the store accepts the bytes (a part uploaded, a chunk written), with the total so far. */
  onProgress?: (bytesStored: number) => void;
  /** The byte count the caller expects; checked, like sha256, before the object becomes visible. */
  size?: number;
  /**
   * The key holds an object this put replaces (`dr rekey`): a failure after the new bytes may
   * have become visible leaves the key as it is instead of removing it. Nothing else changes.
   */
  replacing?: boolean;
}

/** Bytes `start` (inclusive) to `end` (exclusive, default: the object's end) of an object. */
export interface ByteRange {
  start: number;
  end?: number;
}

/** How a stream from `get` hands out its bytes. */
export interface ReadOptions {
  /** Bytes per chunk where the store chooses them (a folder does; an object store's come as the network gives them). */
  chunkBytes?: number;
  /**
   * Stops waiting for the store's answer (and retrying): a store that takes a request and never
   * answers would otherwise hold the caller, and an interrupt waiting for it, until the request
   * times out. The stream once returned is the caller's to destroy.
   */
  signal?: AbortSignal;
}

/** A new header in front of an object's bytes from `payloadFrom` on (`dr rekey` of an `.age` archive). */
export interface HeadRewrite {
  head: Buffer;
  payloadFrom: number;
  /** The old object's size, as a HEAD found it; the store refuses when it no longer is. */
  oldSize: number;
  /** The old object's tag (`ObjectInfo.etag`) when its payload was read; the store refuses when it no longer has it. */
  oldEtag?: string;
  /** The new object's sha256, stored as its metadata `sha256`. */
  sha256: string;
  metadata?: Record<string, string>;
  onRetry?: (info: RetryInfo) => void;
}

export interface HeadRewriteResult {
  size: number;
  /** "server-copy": the payload was copied inside the store; "streamed": read and uploaded again. */
  method: "server-copy" | "streamed";
  retries: number;
}

export interface RetryInfo {
  operation: string;
  attempt: number;
  delayMs: number;
  error: string;
}

export interface PutResult {
  key: string;
  size: number;
  /** Hex SHA-256 of the bytes written, computed while streaming. */
  sha256: string;
  /** Transient failures that were retried during this put. */
  retries: number;
}

export interface BackupStore {
  /** Human form of the root: a folder path or `s3://bucket/prefix/`. */
  readonly root: string;
  /** Human form of one key: `<root><key>`. */
  describe(key: string): string;
  /** Streams `source` to `key`. All or nothing: on failure no object (and no pending upload) remains. */
  put(key: string, source: Readable, options?: PutOptions): Promise<PutResult>;
  /** A stream of the object's bytes (or of `range`); throws a UserError if it does not exist. */
  get(key: string, range?: ByteRange, options?: ReadOptions): Promise<Readable>;
  /** Size, time and metadata, or undefined if there is no such object. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Objects directly under the root whose key starts with `prefix` (no recursion). */
  list(prefix?: string): Promise<ObjectInfo[]>;
  /** Removes the object; a missing object is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Replaces `key` by `head` followed by its own bytes from `payloadFrom` on, all or nothing: the
   * old object stays whole until the new one is complete. Object stores only (a local archive is
   * rewritten in place under a journal, src/dr/age/rekey.ts).
   */
  rewriteHead?(key: string, rewrite: HeadRewrite): Promise<HeadRewriteResult>;
}
