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
}

export interface PutOptions {
  /**
   * Lower-case hex SHA-256 the caller expects the bytes to have. The store checks the streamed
   * bytes against it (and stores it as metadata `sha256`); a mismatch fails the put and leaves
   * no object behind.
   */
  sha256?: string;
  /** User metadata stored with the object (keys lower-case, values ASCII). */
  metadata?: Record<string, string>;
  /** Called before each retry of a transient failure (for logging). */
  onRetry?: (info: RetryInfo) => void;
  /** Called as the store accepts the bytes (a part uploaded, a chunk written), with the total so far. */
  onProgress?: (bytesStored: number) => void;
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
  /** A stream of the object's bytes; throws a UserError if it does not exist. */
  get(key: string): Promise<Readable>;
  /** Size, time and metadata, or undefined if there is no such object. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Objects directly under the root whose key starts with `prefix` (no recursion). */
  list(prefix?: string): Promise<ObjectInfo[]>;
  /** Removes the object; a missing object is not an error. */
  delete(key: string): Promise<void>;
}
