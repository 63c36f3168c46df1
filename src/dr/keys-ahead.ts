/**
 * Working out an encrypted archive's key before it is read: the 0.1 s of PBKDF2 for a password,
 * or loading age and unwrapping the file key for identities. Every reader
 * of an archive (restore, verify, a dry run, a drill, `dr list --check --deep`; from a file or
 * from a store) starts it here, from the first bytes of the stream it is about to read, so the
 * key is ready, or nearly, when the read reaches the header instead of being started then.
 * A reader that reports what it does (restore, verify, a dry run) also awaits the key's verdict
 * here (checkKeysAhead) before it says it started: a missing or wrong key is refused from the
 * first bytes, not after "Restoring ..." and a progress bar.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  FIRST_BLOCK_BYTES,
  SALT_BYTES,
  firstPlainBlock,
  startKeyDerivation,
  type KeyCache,
} from "./fernet.js";
import { AGE_MAGIC, headerLength, looksLikeAge } from "./age/header.js";
import { authFailure, decryptsToGzip } from "./archive-error.js";
import { AgeSplitHasher } from "./age/split-hash.js";
import { SNIFF_BYTES, archiveKindOf, recordedMismatch, type ReadArchiveOptions } from "./unpack.js";

/** An age header is 4 KiB unless it has many recipients; one that does not fit is unwrapped at the read. */
const AGE_HEAD_BYTES = 64 * 1024;

/**
 * The first bytes of `stream`, put back in front of it (what the reader then reads is unchanged):
 * at least `enough(head)` bytes, or fewer if the stream ends or fails first (the read reports
 * that), or `max`. Resolves only once the stream has data, an end or an error.
 */
function peekHead(stream: Readable, enough: (head: Buffer) => boolean, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let length = 0;
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      stream.off("readable", take);
      stream.off("error", done);
      stream.off("close", done);
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      // Put back in the same tick as the read() that may have met the end: the stream then
      // emits 'end' only once the reader has taken these bytes too.
      if (head.length && !stream.destroyed) stream.unshift(head);
      resolve(head);
    };
    const take = (): void => {
      let chunk = stream.read() as Buffer | null;
      // 'readable' with nothing to read is the end of the stream.
      if (chunk === null) return done();
      do {
        parts.push(chunk);
        length += chunk.length;
        if (length >= max || enough(parts.length === 1 ? chunk : Buffer.concat(parts))) return done();
      } while ((chunk = stream.read() as Buffer | null) !== null);
    };
    stream.on("readable", take);
    stream.once("error", done);
    stream.once("close", done);
  });
}

/** Whether `head` holds a whole age header, or is no age header at all (nothing to wait for). */
const ageHeaderComplete = (head: Buffer): boolean => {
  try {
    return headerLength(head) >= 0;
  } catch {
    return true;
  }
};

interface ArchiveKeys {
  password?: string;
  identities?: readonly string[];
  keyCache?: KeyCache;
}

/** Whether `source` is a byte stream whose first bytes can be looked at before the read. */
const peekable = (source: AsyncIterable<Buffer | string>): source is Readable =>
  source instanceof Readable && !source.readableObjectMode && !source.destroyed;

/**
 * `opts` with a key cache (theirs, or a new one) holding the key of the archive `source` is:
 * worked out from its first bytes, and judged (checkKeys: a missing or wrong key is thrown
 * here, as the read would at its end), before the caller says it started. Pass them to the
 * read. Sources that are not streams are left to the read.
 */
export async function withKeysAhead<O extends ReadArchiveOptions>(
  source: AsyncIterable<Buffer | string>,
  opts: O,
): Promise<O & { keyCache: KeyCache }> {
  const keyed = { ...opts, keyCache: opts.keyCache ?? new Map() };
  if (!peekable(source)) return keyed;
  try {
    const head = await peekHead(source, enoughToJudge, AGE_HEAD_BYTES);
    await startKeysFromHead(head, opts, keyed.keyCache);
    await checkKeys(source, head, keyed);
  } catch (err) {
    // Refused before the read: no read will end the stream and release its file or connection.
    source.destroy();
    throw err;
  }
  return keyed;
}

/**
 * When `source` is an encrypted archive that the `keys` given open, starts working out its key
 * into `cache` (pass the same cache to the read).
 */
export async function startKeysAhead(
  source: AsyncIterable<Buffer | string>,
  keys: ArchiveKeys,
  cache: KeyCache,
): Promise<void> {
  if (keys.password === undefined && keys.identities === undefined) return;
  if (!peekable(source)) return;
  const head = await peekHead(
    source,
    keys.identities !== undefined ? ageHeaderComplete : (h) => h.length >= SALT_BYTES + 6,
    keys.identities !== undefined ? AGE_HEAD_BYTES : SALT_BYTES + 6,
  );
  await startKeysFromHead(head, keys, cache);
}

/** Starts working out the key of the archive that begins with `head`, with the keys given. */
async function startKeysFromHead(head: Buffer, keys: ArchiveKeys, cache: KeyCache): Promise<void> {
  if (keys.password !== undefined) startKeyDerivation(head, keys.password, cache);
  if (keys.identities !== undefined && head.length >= AGE_MAGIC.length && looksLikeAge(head)) {
    const { startFileKeyUnwrap } = await import("./age/keys.js");
    startFileKeyUnwrap(head, keys.identities, cache);
  }
}

/** Whether `head` is enough to judge the key: a whole age header, or a Fernet token's first block. */
const enoughToJudge = (head: Buffer): boolean =>
  head.length >= SNIFF_BYTES &&
  (looksLikeAge(head) ? ageHeaderComplete(head) : head.length >= FIRST_BLOCK_BYTES);

/**
 * The sha256 (and, with `expectAge`, the header and payload hashes) of `source` read to its end:
 * on the failure path only, where nothing else reads it, to tell damage from a wrong key.
 */
async function hashOfRest(
  source: Readable,
  opts: ReadArchiveOptions,
): Promise<{ sha256: string; split: AgeSplitHasher | undefined }> {
  const hash = createHash("sha256");
  const split = opts.expectAge && new AgeSplitHasher(opts.expectAge.age_header_bytes);
  for await (const chunk of source as AsyncIterable<Buffer>) {
    hash.update(chunk);
    split?.update(chunk);
  }
  return { sha256: hash.digest("hex"), split };
}

/**
 * Refuses, from the first bytes of `source` (`head`), what the read would refuse only at its end or after
 * it began: no archive at all (exit 5), an encrypted one without the kind of key it needs
 * (exit 2), a password whose key turns the first block into noise or identities none of which
 * unwraps the age header (exit 4, or 5 when the bytes differ from the recorded sha256), an age
 * header that is damaged (exit 5). The same errors, in the same words, as the read; the key
 * worked out here is the one `opts.keyCache` hands the read. Archives that pass are left to the
 * read.
 */
async function checkKeys(
  source: Readable,
  head: Buffer,
  opts: ReadArchiveOptions & { keyCache: KeyCache },
): Promise<void> {
  const { encrypted, age } = await archiveKindOf(head.subarray(0, SNIFF_BYTES), opts);
  if (!encrypted) return;
  if (age) {
    let length: number;
    try {
      length = headerLength(head);
    } catch {
      return; // the read names the damage
    }
    if (length < 0) return; // a header past AGE_HEAD_BYTES: unwrapped at the read
    const { AgeIdentityError, unwrapFileKeyCached } = await import("./age/keys.js");
    const { ageReadError } = await import("./age/archive.js");
    try {
      await unwrapFileKeyCached(head.subarray(0, length), opts.identities!, opts.keyCache);
    } catch (err) {
      // An altered stanza looks like a wrong identity: the recorded hashes tell them apart.
      if (err instanceof AgeIdentityError && (opts.expectSha256 || opts.expectAge)) {
        const rest = await hashOfRest(source, opts);
        const mismatch = recordedMismatch(opts, rest.sha256, rest.split);
        if (mismatch) throw mismatch;
      }
      throw ageReadError(err, opts.label ?? "archive", opts.recipientFingerprints);
    }
    return;
  }
  const plainHead = await firstPlainBlock(head, opts.password!, opts.keyCache);
  if (!plainHead || decryptsToGzip(plainHead)) return;
  // Noise: a wrong password, or damage in the first bytes; the recorded sha256 tells which.
  throw authFailure({
    label: opts.label,
    actualSha256: opts.expectSha256 ? (await hashOfRest(source, {})).sha256 : "",
    expectSha256: opts.expectSha256?.toLowerCase(),
    expectSha256From: opts.expectSha256From,
    plainHead,
  });
}
