/**
 * Working out an encrypted archive's key before it is read: the 0.1 s of PBKDF2 for a password,
 * or loading age and unwrapping the file key for identities. Every reader
 * of an archive (restore, verify, a dry run, a drill, `dr list --check --deep`; from a file or
 * from a store) starts it here, from the first bytes of the stream it is about to read, so the
 * key is ready, or nearly, when the read reaches the header instead of being started then.
 */
import { Readable } from "node:stream";
import { SALT_BYTES, startKeyDerivation, type KeyCache } from "./fernet.js";
import { AGE_MAGIC, headerLength, looksLikeAge } from "./age/header.js";

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

/**
 * `opts` with a key cache (theirs, or a new one) into which, when `source` is an encrypted
 * archive that the keys given open, its key is being worked out: pass them to the read. Sources
 * that are not streams are left alone.
 */
export async function withKeysAhead<O extends ArchiveKeys>(
  source: AsyncIterable<Buffer | string>,
  opts: O,
): Promise<O & { keyCache: KeyCache }> {
  const keyCache = opts.keyCache ?? new Map();
  await startKeysAhead(source, opts, keyCache);
  return { ...opts, keyCache };
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
  if (!(source instanceof Readable) || source.readableObjectMode || source.destroyed) return;
  const head = await peekHead(
    source,
    keys.identities !== undefined ? ageHeaderComplete : (h) => h.length >= SALT_BYTES + 6,
    keys.identities !== undefined ? AGE_HEAD_BYTES : SALT_BYTES + 6,
  );
  if (keys.password !== undefined) startKeyDerivation(head, keys.password, cache);
  if (keys.identities !== undefined && head.length >= AGE_MAGIC.length && looksLikeAge(head)) {
    const { startFileKeyUnwrap } = await import("./age/keys.js");
    startFileKeyUnwrap(head, keys.identities, cache);
  }
}
