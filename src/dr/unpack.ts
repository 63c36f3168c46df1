/**
 * Reading an archive, defensively. One streaming pass: (decrypt) → gunzip → tar → entries, with
 * every entry checked before a byte of it is handed on:
 *  - only regular files and folders, under names that cannot escape the destination
 *    (entry-policy.ts);
 *  - our archives (manifest.json first, with per-file hashes): every entry is listed in the
 *    manifest with that size and mode, every listed file is present, every sha256 matches, and
 *    the decompressed stream may not grow past what the manifest's sizes allow (bomb);
 *  - archives of the Python reference (no hashes): structure is checked, files are hashed and
 *    counted, and the result says that per-file hashes were not available.
 * Encrypted archives are decrypted on the fly; nothing read from them is trusted until the
 * Fernet HMAC (or the last age chunk's tag) at the very end verifies, so a caller accepts its
 * staging area only after this function returns. When anything fails mid-way, the rest of an encrypted source is still read
 * to check the HMAC: a wrong password is reported as such (exit 4), not as a corrupt gzip.
 */
import { createHash, type Hash } from "node:crypto";
import type { TransformOptions } from "node:stream";
import { createGunzip, type Gunzip, type ZlibOptions } from "node:zlib";
import { ExitCode, UserError } from "../errors/errors.js";
import { archiveError, authFailure, shaMismatch, zlibToArchiveError } from "./archive-error.js";
import { tuneForShortBursts } from "./jit.js";
import { GarbageBudget } from "./memory.js";
import { SealChecker } from "./seal.js";
import { AgeSplitHasher, splitMismatch, type AgeSplitHashes } from "./age/split-hash.js";
// age (its curves and ML-KEM) loads only for an encrypted archive: a plain restore need not pay it.
import type { AgeArchiveDecryptor } from "./age/archive.js";
import { AGE_MAGIC, looksLikeAge } from "./age/header.js";
import { TarReader, type ExtractHandler } from "./tar-reader.js";
import {
  FernetAuthError,
  FernetDecryptor,
  FernetFormatError,
  SALT_BYTES,
  looksEncrypted,
  startsWithToken,
  type KeyCache,
} from "./fernet.js";
import type { ParsedManifest } from "./manifest.js";

export interface ArchiveSummary {
  format: "bernstein" | "reference";
  encrypted: boolean;
  /** sha256 and size of the archive bytes as read (the encrypted file when encrypted). */
  sha256: string;
  size_bytes: number;
  /** Every regular file in the archive, manifest.json included. */
  file_count: number;
  /** Regular files in archive order. */
  files: string[];
  /** sha256 of each regular file as read (for reference archives the only hashes there are). */
  file_hashes: Map<string, string>;
  dirs: string[];
  manifest_raw: Record<string, unknown>;
  manifest_sha256: string;
  parsed: ParsedManifest;
  per_file_hashes: boolean;
  audit_key?: Buffer;
}

export interface ReadArchiveOptions {
  password?: string;
  /** age identities (`AGE-SECRET-KEY-...`) for `.age` archives. */
  identities?: readonly string[];
  /** The `.age` archive's recipients' fingerprints as catalogued, for the wrong-identity message. */
  recipientFingerprints?: readonly string[];
  /**
   * Keys worked out ahead (keys-ahead.ts startKeysAhead) or by an earlier read of the same
   * archive: Fernet keys by password and salt, age file keys by identities and header.
   */
  keyCache?: KeyCache;
  /** Name of the archive for messages. */
  label?: string;
  /**
   * The archive's expected sha256 (--sha256, its `.sha256` sidecar). Archives of the Python
   * reference carry no seal, so only this sees a flipped bit that gzip cannot; for encrypted
   * archives it tells a damaged salt from a wrong password.
   */
  expectSha256?: string;
  /** Where expectSha256 came from, for messages ("--sha256", "backup.tar.gz.sha256"). */
  expectSha256From?: string;
  /**
   * An `.age` archive's recorded header and payload hashes (a catalogue row or record, after a
   * header-only rekey: age/split-hash.ts), checked like expectSha256, from the same read.
   */
  expectAge?: AgeSplitHashes;
  expectAgeFrom?: string;
  /**
   * The archive's size in bytes, when known before it is read (a file, an object): a restore or
   * verify starts its staging worker at once for a large one (staging-writer.ts).
   */
  archiveBytes?: number;
  /** Called as the archive is read, with the bytes read so far (progress). */
  onProgress?: (bytesRead: number) => void;
}

/**
 * Resolves on 'drain', or on 'close' (a failed tar loop destroys the stream), and removes both
 * listeners, so that waiting once per chunk adds nothing that outlives the wait.
 */
function drainedOrClosed(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/** Wraps a source to hash and count its raw bytes (also into the garbage budget). */
async function* measured(
  source: AsyncIterable<Buffer | string>,
  acc: { hash: Hash; bytes: number; split?: AgeSplitHasher },
  budget: GarbageBudget,
  onProgress?: (bytesRead: number) => void,
): AsyncGenerator<Buffer> {
  for await (const c of source) {
    const chunk = typeof c === "string" ? Buffer.from(c) : c;
    acc.hash.update(chunk);
    acc.split?.update(chunk);
    acc.bytes += chunk.length;
    budget.add(chunk.length);
    onProgress?.(acc.bytes);
    yield chunk;
  }
}

/** The bytes that tell gzip from salt+token from an age header. */
export const SNIFF_BYTES = SALT_BYTES + 6;

/**
 * What an archive starting with `head` (SNIFF_BYTES, or all there is) is: exit 5 when it is no
 * archive, exit 2 when it is encrypted and the kind of key it needs was not given.
 */
export async function archiveKindOf(
  head: Buffer,
  opts: Pick<ReadArchiveOptions, "label" | "password" | "identities">,
): Promise<{ encrypted: boolean; age: boolean }> {
  // The token's start decides before gzip's magic, which a random salt may begin with.
  const gzip = !startsWithToken(head) && head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const age = !gzip && head.length >= AGE_MAGIC.length && looksLikeAge(head);
  const encrypted = !gzip && (age || looksEncrypted(head));
  if (!gzip && !encrypted) {
    throw archiveError(
      "not-archive",
      `${opts.label ?? "input"} is not a backup archive (neither gzip nor an encrypted backup)`,
    );
  }
  if (encrypted) (await import("./age/archive.js")).checkKeyKind(opts, age);
  return { encrypted, age };
}

/** Reads enough bytes to tell gzip from salt+token from an age header, and says which it is. */
async function sniff(
  it: AsyncIterator<Buffer>,
  opts: ReadArchiveOptions,
): Promise<{ head: Buffer; encrypted: boolean; age: boolean }> {
  let head = Buffer.alloc(0);
  while (head.length < SNIFF_BYTES) {
    const r = await it.next();
    if (r.done) break;
    head = Buffer.concat([head, r.value]);
  }
  return { head, ...(await archiveKindOf(head, opts)) };
}

/**
 * The archive's whole bytes against what is recorded of them (expectSha256, expectAge): the
 * error to report when they differ. `split`: the hasher of header and payload (expectAge).
 */
export function recordedMismatch(
  opts: ReadArchiveOptions,
  sha256: string,
  split: AgeSplitHasher | undefined,
): UserError | undefined {
  const bad = opts.expectAge && splitMismatch(opts.expectAge, split?.digest());
  if (bad)
    return archiveError(
      "mismatch",
      `archive is damaged or altered: ${bad} (${opts.expectAgeFrom ?? "recorded"})`,
    );
  const expected = opts.expectSha256?.toLowerCase();
  if (expected && expected !== sha256) return shaMismatch(sha256, expected, opts.expectSha256From);
  return undefined;
}

/**
 * The decompressing half: a gunzip whose output a loop feeds to the tar reader. `failure` holds
 * the first error of that loop (a gzip or tar error), which also destroys the gunzip.
 */
class Inflater {
  // 256 KiB of output per step, because each step is a hand-off to the thread pool and back;
  // room for a few steps on each side lets inflating run ahead of the tar loop instead of the
  // two taking turns. (zlib streams pass stream options on to Transform; @types/node leaves
  // them out.)
  readonly gunzip: Gunzip = createGunzip({
    chunkSize: 256 * 1024,
    writableHighWaterMark: 256 * 1024,
    readableHighWaterMark: 1024 * 1024,
  } as ZlibOptions & TransformOptions);
  failure: unknown;
  readonly done: Promise<void>;
  private gzHeaderNeeded = 10;
  private readonly seal = new SealChecker();

  /**
   * `budget` counts the inflated chunks too: they are the most numerous fresh Buffers, several
   * for each compressed one (counting only what is read let garbage pile up in proportion to
   * the compression ratio, and peak memory grow with the size of a well-compressed file).
   */
  constructor(
    readonly tar: TarReader,
    budget: GarbageBudget,
  ) {
    this.done = (async () => {
      try {
        for await (const chunk of this.gunzip) {
          budget.add((chunk as Buffer).length);
          await tar.push(chunk as Buffer);
        }
        tar.finish();
      } catch (err) {
        this.failure ??= zlibToArchiveError(err);
        this.gunzip.destroy();
        throw this.failure;
      }
    })();
    this.done.catch(() => {});
  }

  /** Hands on plain (decrypted) archive bytes, waiting while the gunzip is full. */
  async feed(plain: Buffer): Promise<void> {
    if (this.failure || !plain.length) return;
    this.seal.update(plain);
    if (this.gzHeaderNeeded > 0) {
      this.tar.gzipHeader = Buffer.concat([this.tar.gzipHeader, plain.subarray(0, this.gzHeaderNeeded)]);
      this.gzHeaderNeeded = 10 - this.tar.gzipHeader.length;
    }
    // A gzip or tar error surfaces through the tar loop (done), which destroys gunzip.
    if (!this.gunzip.write(plain) && !this.gunzip.destroyed) await drainedOrClosed(this.gunzip);
  }

  sealed(): boolean {
    return this.seal.sealed();
  }
}

/** Feeds every byte of the source through (decryption and) the inflater, then checks the HMAC. */
async function pump(
  head: Buffer,
  it: AsyncIterator<Buffer>,
  decryptor: FernetDecryptor | AgeArchiveDecryptor | undefined,
  inflater: Inflater,
  failures: { authFailed: () => UserError; identityRejected: () => Promise<void> },
): Promise<void> {
  let chunk: Buffer | undefined = head;
  for (;;) {
    if (chunk && chunk.length) {
      if (decryptor) {
        let plain: Buffer;
        try {
          plain = await decryptor.update(chunk);
        } catch (err) {
          if (err instanceof UserError && err.exitCode === ExitCode.BAD_PASSWORD)
            await failures.identityRejected();
          throw err instanceof FernetFormatError
            ? archiveError("corrupt", `encrypted archive is damaged: ${err.message}`)
            : err;
        }
        await inflater.feed(plain);
      } else {
        await inflater.feed(chunk);
        if (inflater.failure) break; // a plain archive has nothing more to learn from the rest
      }
    }
    const r = await it.next();
    if (r.done) break;
    chunk = r.value;
  }
  if (!decryptor) return;
  try {
    await inflater.feed(decryptor.final());
  } catch (err) {
    if (err instanceof FernetAuthError) throw failures.authFailed();
    if (err instanceof FernetFormatError)
      throw archiveError("truncated", `encrypted archive is damaged: ${err.message}`);
    throw err;
  }
}

/**
 * Reads a whole archive from a byte source, validating as described at the top, and hands
 * entries to `handler`. Resolves only when everything (HMAC included) checked out.
 */
export async function readArchive(
  source: AsyncIterable<Buffer | string>,
  handler: ExtractHandler,
  opts: ReadArchiveOptions = {},
): Promise<ArchiveSummary> {
  tuneForShortBursts();
  const acc = {
    hash: createHash("sha256"),
    bytes: 0,
    split: opts.expectAge && new AgeSplitHasher(opts.expectAge.age_header_bytes),
  };
  const expectSha256 = opts.expectSha256?.toLowerCase();
  const budget = new GarbageBudget();
  const it = measured(source, acc, budget, opts.onProgress)[Symbol.asyncIterator]();
  const { head, encrypted, age } = await sniff(it, opts);
  const decryptor = !encrypted
    ? undefined
    : age
      ? new (await import("./age/archive.js")).AgeArchiveDecryptor(
          opts.identities!,
          opts.label,
          opts.recipientFingerprints,
          opts.keyCache,
        )
      : new FernetDecryptor(opts.password!, opts.keyCache);
  const tar = new TarReader(handler, encrypted);
  const inflater = new Inflater(tar, budget);
  // Every byte has been read when authentication fails: the sha256 so far is the archive's.
  const authFailed = (): UserError =>
    authFailure({
      label: opts.label,
      actualSha256: acc.hash.copy().digest("hex"),
      expectSha256,
      expectSha256From: opts.expectSha256From,
      plainHead: (decryptor as FernetDecryptor).plainHead,
    });
  // An altered age stanza looks like a wrong identity: the recorded sha256 tells them apart.
  const identityRejected = async (): Promise<void> => {
    if (!expectSha256 && !opts.expectAge) return;
    while (!(await it.next()).done);
    const bad = recordedMismatch(opts, acc.hash.copy().digest("hex"), acc.split);
    if (bad) throw bad;
  };
  try {
    await pump(head, it, decryptor, inflater, { authFailed, identityRejected });
    if (!inflater.failure) inflater.gunzip.end();
    await inflater.done;
  } catch (err) {
    // Decided now: the tar loop stopped below fails with a premature close of its own.
    const reported = err instanceof UserError ? err : (inflater.failure ?? err);
    inflater.gunzip.destroy();
    await it.return?.(undefined);
    // The tar loop may be inside a handler call (waiting for the staging worker to take a
    // batch): let it see the destroyed gunzip and stop before we return. Otherwise it would go
    // on calling the handler after the caller has closed it and removed its folder, and a
    // restore could exit with its temp folder left behind.
    await inflater.done.catch(() => {});
    throw reported;
  }
  const parsed = tar.parsed!;
  if (parsed.kind === "ours" && parsed.manifest.format_version >= 2 && !inflater.sealed()) {
    throw archiveError(
      "corrupt",
      "archive is damaged: its seal does not match its bytes (a change that gzip's own checks cannot see)",
    );
  }
  const archiveSha = acc.hash.digest("hex");
  const bad = recordedMismatch(opts, archiveSha, acc.split);
  if (bad) throw bad;
  return {
    format: parsed.kind === "ours" ? "bernstein" : "reference",
    encrypted,
    sha256: archiveSha,
    size_bytes: acc.bytes,
    file_count: tar.files.length,
    files: tar.files,
    file_hashes: tar.hashes,
    dirs: tar.dirs,
    manifest_raw: tar.manifestRaw!,
    manifest_sha256: tar.manifestSha,
    parsed,
    per_file_hashes: parsed.kind === "ours",
    audit_key: tar.auditKey,
  };
}
